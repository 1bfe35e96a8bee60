"""The threads pool's event-loop wake-up (worker/thread_pool_wakeup.py), with Celery's real pool
classes and kombu's real timer, and the tuning of a main process that handles batches."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from celery.concurrency.prefork import TaskPool as PreforkTaskPool
from celery.concurrency.solo import TaskPool as SoloTaskPool
from celery.concurrency.thread import TaskPool as ThreadTaskPool
from kombu.asynchronous.timer import Timer

from tests.helpers import python_output
from worker.celery_app import app
from worker.thread_pool_wakeup import WAKEUP_INTERVAL, ThreadPoolWakeup


@pytest.fixture
def thread_pool() -> Iterator[ThreadTaskPool]:
    pool = ThreadTaskPool(limit=2)
    yield pool
    pool.executor.shutdown(wait=False)


def consumer(pool: object) -> SimpleNamespace:
    """What the bootstep reads of Celery's consumer: its pool and its event loop's timer."""
    return SimpleNamespace(pool=pool, timer=Timer())


def test_under_the_threads_pool_the_loop_is_woken_at_the_interval(
    thread_pool: ThreadTaskPool,
) -> None:
    parent = consumer(thread_pool)
    step = ThreadPoolWakeup(parent)
    before = time.monotonic()

    step.start(parent)

    [scheduled] = parent.timer.queue
    assert scheduled.entry is step.entry
    assert before < scheduled.eta <= time.monotonic() + WAKEUP_INTERVAL


@pytest.mark.parametrize("pool", [PreforkTaskPool, SoloTaskPool])
def test_other_pools_get_no_timer(pool: type) -> None:
    parent = consumer(pool(limit=1))
    step = ThreadPoolWakeup(parent)

    step.start(parent)

    assert list(parent.timer.queue) == []
    assert step.entry is None


def test_stop_cancels_and_a_restart_registers_again(thread_pool: ThreadTaskPool) -> None:
    parent = consumer(thread_pool)
    step = ThreadPoolWakeup(parent)
    step.start(parent)
    first = step.entry

    step.stop(parent)
    # After a lost connection Celery clears the loop's timers, then starts the consumer again.
    parent.timer.clear()
    step.start(parent)

    assert first is not None and first.canceled
    assert step.entry is not None and step.entry is not first
    assert len(list(parent.timer.queue)) == 1


def test_the_app_runs_the_step_in_its_consumer() -> None:
    assert ThreadPoolWakeup in app.steps["consumer"]


TUNED_THRESHOLD = """
import gc, sys
from celery.concurrency.prefork import TaskPool as PreforkTaskPool
from celery.concurrency.thread import TaskPool as ThreadTaskPool
from celery.signals import worker_ready
import worker.tasks
pool = {"threads": lambda: ThreadTaskPool(limit=1), "prefork": lambda: PreforkTaskPool(limit=1)}
class Consumer:  # what the handler reads of Celery's consumer (a signal sender is hashed)
    def __init__(self, pool):
        self.pool = pool
worker_ready.send(sender=Consumer(pool[sys.argv[1]]()))
print(gc.get_threshold()[0])
"""


@pytest.mark.parametrize(("pool", "tuned"), [("threads", True), ("prefork", False)])
def test_a_main_process_that_handles_batches_gets_their_tuning(pool: str, tuned: bool) -> None:
    from worker.tasks import GC_THRESHOLD

    threshold = int(python_output(TUNED_THRESHOLD, pool).split()[-1])
    # Prefork's pool processes are tuned by worker_process_init instead; its main process
    # keeps Python's default.
    assert (threshold == GC_THRESHOLD[0]) is tuned
