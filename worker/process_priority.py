"""The CPU priority a worker runs at.

A worker shares its host's CPUs with whatever else runs there, and on a small deployment that
is Elasticsearch itself. Both are CPU-bound during a load; at equal priority the scheduler
preempts Elasticsearch's indexing threads for worker processes mid-request, and the node then
spends more CPU per document. At a lower priority (a higher niceness) the workers take the
cycles the node leaves: ``bench_settings.py`` measured (c) 4 % faster at niceness 10 than 0
in the median of 5 interleaved rounds, twice, with 4-6 % less Elasticsearch CPU per document
(README, "Benchmarks"). On a host of its own a worker loses nothing by it: nothing else wants
the CPU.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

#: Niceness a worker takes by default (``MEDLINE_WORKER_NICE``): below Elasticsearch and
#: anything else at the default 0, above batch jobs at 19. Niceness 19 and SCHED_BATCH were
#: both slower than 10 when measured (README, "Benchmarks").
DEFAULT_WORKER_NICE = 10
#: The niceness range of Linux; lower than the current value needs privileges.
MAX_NICE = 19


def lower_priority(niceness: int) -> int:
    """Raise this process's niceness to ``niceness`` (children forked later inherit it).

    Never lowers it: an operator who started the worker under ``nice -n 15`` keeps 15, and
    lowering would need privileges anyway.

    :param niceness: the niceness wanted, 0 to :data:`MAX_NICE`; 0 changes nothing.
    :returns: the process's niceness afterwards.
    :raises ValueError: ``niceness`` is outside 0 to :data:`MAX_NICE`.
    """
    if not 0 <= niceness <= MAX_NICE:
        raise ValueError(f"niceness must be 0 to {MAX_NICE}, not {niceness}")
    current = os.nice(0)
    if niceness > current:
        current = os.nice(niceness - current)
        log.debug("worker niceness raised to %d", current)
    return current
