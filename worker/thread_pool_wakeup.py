"""Celery's ``threads`` pool: wake the consumer's event loop so finished batches are acknowledged.

With ``--pool threads`` (``MEDLINE_WORKER_POOL=threads``) a pool thread that finishes a task
leaves its acknowledgement to the consumer's event loop, which only runs it on its next wake-up:
a message from the broker or a timer, often seconds away (celery/celery#6941). With one batch
prefetched per thread and late acknowledgement, a thread then sat idle that long between two
batches: 0.29 of the prefork pool's throughput here (``bench_settings.py``). A no-op timer every
:data:`WAKEUP_INTERVAL` seconds bounds that wait. Other pools acknowledge through their own
file descriptors and are left alone.

The timer is registered by a consumer bootstep, so it is registered again whenever the consumer
restarts after a lost broker connection (Celery clears the event loop's timers then).
"""

from __future__ import annotations

from typing import Any

from celery import bootsteps
from celery.concurrency.thread import TaskPool as ThreadTaskPool

#: Seconds between two wake-ups of the event loop under the threads pool: the longest a
#: finished batch waits for its acknowledgement, and the thread for its next batch.
WAKEUP_INTERVAL = 0.05


def _nothing() -> None:
    """The timer's callback: waking the loop is the whole point."""


def uses_thread_pool(consumer: Any) -> bool:
    """Whether ``consumer`` (Celery's worker consumer) runs its tasks in the threads pool."""
    return isinstance(getattr(consumer, "pool", None), ThreadTaskPool)


class ThreadPoolWakeup(bootsteps.StartStopStep):
    """Consumer bootstep: under the threads pool, wake the event loop every
    :data:`WAKEUP_INTERVAL` seconds while the consumer runs; otherwise do nothing."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.entry: Any = None

    def start(self, parent: Any) -> None:
        if uses_thread_pool(parent):
            self.entry = parent.timer.call_repeatedly(WAKEUP_INTERVAL, _nothing)

    def stop(self, parent: Any) -> None:
        if self.entry is not None:
            self.entry.cancel()
            self.entry = None

    shutdown = stop
