"""Celery tasks: unpack the message, call the plain functions, decide on retry.

A task never fails: a batch is committed (indexed or dead-lettered), retried with backoff, or,
once the retry budget is spent, committed whole to the ``exhausted`` dead-letter queue. A
failed task would be acknowledged and its batch lost, so every exception is routed.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from typing import Any

import orjson
from celery import Task
from celery.concurrency.prefork import TaskPool as PreforkTaskPool
from celery.exceptions import Reject, Retry
from celery.signals import worker_process_init, worker_ready
from pydantic import ValidationError
from redis import RedisError

from schemas.dead_letter import DeadLetter
from schemas.messages import PackedBatch, RawRecord
from worker.bulk_indexer import BulkLimits, backoff_delay
from worker.celery_app import INGEST_TASK, SCAN_INBOX_TASK, app, batch_publisher
from worker.errors import ConfigurationError
from worker.inbox import inbox_job_completed, scan_inbox
from worker.index_admin import ensure_index
from worker.jobs import BatchOutcome
from worker.log_setup import describe_error
from worker.malloc_tuning import keep_freed_memory
from worker.metrics import (
    batch_in_progress,
    observe_batch,
    observe_bulk_request,
    observe_retry,
    observe_unreadable,
    retry_cause,
)
from worker.pipeline import (
    BatchReport,
    MissingBatchError,
    exhausted_outcome,
    load_batch,
    process_batch,
)
from worker.reaper import reap_lost_batches
from worker.runtime import Runtime, get_runtime, reset_runtime
from worker.settings import Settings, get_settings
from worker.status import record_throughput

log = logging.getLogger(__name__)

#: Seconds between two checks of the dead-letter high-water mark while paused.
PAUSE_POLL = 5.0
#: Job id given to a message that could not even be read as a batch.
UNREADABLE_JOB = "unreadable"


#: Allocations between two young-generation collections in a pool process. A batch creates
#: hundreds of thousands of short-lived, cycle-free objects (freed by reference counting); at
#: Python's default of 700 the collector ran often enough to cost about half of the parse time.
GC_THRESHOLD = (50_000, 20, 100)


def _tune_for_batches() -> None:
    """Set up the process that handles batches: collector thresholds, freed memory kept."""
    # Objects from start-up live for ever: keep the collector from scanning them again.
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    if get_settings().keep_freed_memory:
        keep_freed_memory()


@worker_process_init.connect
def _fresh_clients_after_fork(**_: Any) -> None:
    # Sockets inherited from the parent would be shared by every child: start clean.
    reset_runtime()
    # Here, where the batches are handled, however the worker was started (CLI or `celery`).
    _tune_for_batches()


@worker_ready.connect
def _tune_main_process_without_prefork(sender: Any = None, **_: Any) -> None:
    # The solo and threads pools handle batches in the main process, where
    # worker_process_init never fires.
    if sender is not None and not isinstance(getattr(sender, "pool", None), PreforkTaskPool):
        _tune_for_batches()


@worker_ready.connect
def _log_bulk_limits(**_: Any) -> None:
    # What the worker writes with, including what it worked out for itself (worker_defaults).
    limits = BulkLimits.from_settings(get_runtime().settings)
    log.info(
        "bulk requests of up to %d documents or %d bytes, %d in flight per batch",
        limits.chunk_docs,
        limits.chunk_bytes,
        limits.in_flight,
        extra={"event": "bulk_limits", "in_flight": limits.in_flight},
    )


def reap_interval(settings: Settings) -> float:
    """Seconds between two looks for batches the broker lost."""
    return float(max(2, min(60, settings.visibility_timeout // 5)))


@worker_ready.connect
def _start_reaper(**_: Any) -> None:
    # Runs in the worker's main process; pool processes never reap.
    settings = get_runtime().settings

    def loop() -> None:
        rt = Runtime(settings)
        publish = batch_publisher(settings)
        while True:
            time.sleep(reap_interval(settings))
            try:
                reap_lost_batches(rt.redis, rt.jobs, settings, publish)
            except Exception:  # Redis down, etc.: try again next round
                log.warning("looking for lost batches failed", exc_info=True)

    threading.Thread(target=loop, name="medline-reaper", daemon=True).start()


def retry_delay(retries: int, settings: Settings) -> float:
    """Seconds to wait before retry ``retries + 1`` of a batch: exponential, capped, and half
    jittered, which spreads the retries of many workers after an outage."""
    nominal = min(settings.batch_backoff_max, settings.batch_backoff_initial * 2**retries)
    return nominal / 2 + backoff_delay(retries, settings.batch_backoff_initial / 2, nominal / 2)


def budget_spent(first_failure_at: float | None, now: float, settings: Settings) -> bool:
    """Whether a batch failing since ``first_failure_at`` (epoch seconds) has used up its
    retry budget (``MEDLINE_BATCH_RETRY_BUDGET`` seconds of wall-clock time)."""
    return first_failure_at is not None and now - first_failure_at >= settings.batch_retry_budget


def _wait_below_high_water(rt: Runtime) -> None:
    """Hold this worker while the dead-letter queues are over the high-water mark.

    Gives the batch back to the queue after half the visibility timeout, so a paused worker
    never makes the broker think it died.
    """
    limit = rt.settings.dead_letter_high_water
    held_since = time.monotonic()
    while (total := rt.dead_letters.total()) >= limit:
        reason = (
            f"dead-letter queues hold {total} entries, at or over the high-water mark {limit} "
            "(MEDLINE_DEAD_LETTER_HIGH_WATER); replay or purge them to resume"
        )
        rt.dead_letters.set_paused(reason)
        log.warning("not taking new batches: %s", reason)
        if time.monotonic() - held_since > rt.settings.visibility_timeout / 2:
            raise Reject(reason, requeue=True)
        time.sleep(PAUSE_POLL)


def _not_a_batch(exc: ValidationError) -> str:
    first = exc.errors()[0]
    return (
        f"message is not a batch: {exc.error_count()} problems, first: "
        f"{first['msg']} at {'.'.join(map(str, first['loc']))}"
    )


def _dead_letter_unreadable(rt: Runtime, message: Any, reason: str) -> None:
    """Keep a message that yields no batch as a ``malformed`` dead letter of its own job."""
    text = orjson.dumps(message, default=str).decode()
    entry = DeadLetter(
        queue="malformed",
        reason=reason,
        job_id=UNREADABLE_JOB,
        batch_id=f"unreadable-{time.time_ns()}",
        source="broker",
        records=[RawRecord(offset=0, text=text)],
    )
    rt.jobs.commit_batch(UNREADABLE_JOB, entry.batch_id, BatchOutcome(dead_letters=[entry]))
    observe_unreadable(entry)


def _account(
    rt: Runtime, outcome: BatchOutcome, committed: bool, duration_s: float, parsed: int
) -> None:
    """Metrics and the per-minute throughput counters of ``status``, for a finished batch.

    Never raises: the batch is committed already, and a counter is not worth a retry.
    """
    observe_batch(outcome, committed=committed, duration_s=duration_s, parsed=parsed)
    if not committed:
        return
    done = outcome.indexed + outcome.deleted + outcome.skipped_stale
    try:
        record_throughput(
            rt.redis,
            rt.settings,
            indexed=outcome.indexed,
            done=done + outcome.dead_lettered_records,
        )
    except Exception:
        log.debug("could not count throughput", exc_info=True)


def _log_report(report: BatchReport, batch: PackedBatch, retries: int) -> None:
    outcome = report.outcome
    log.info(
        "batch done",
        extra={
            "event": "batch_done",
            "job_id": batch.job_id,
            "batch_id": batch.batch_id,
            "records": report.records,
            "indexed": outcome.indexed,
            "dead_lettered": outcome.dead_lettered_records,
            "deleted": outcome.deleted,
            "skipped_stale": outcome.skipped_stale,
            "committed": report.committed,
            "retries": retries,
            "duration_s": round(report.duration_s, 4),
        },
    )


@app.task(bind=True, name=INGEST_TASK, max_retries=None)
def ingest_batch(
    self: Task, message: dict[str, Any], first_failure_at: float | None = None
) -> None:
    """Parse, validate and index one batch; see :func:`worker.pipeline.process_batch`.

    :param message: the batch's :class:`~schemas.messages.BatchRef` (or, from older producers,
        the whole batch); see :func:`worker.pipeline.load_batch`.
    :param first_failure_at: when the batch first failed as a whole (epoch seconds); carried
        from retry to retry so the retry budget is measured in wall-clock time.
    """
    rt = get_runtime()
    retries = self.request.retries
    try:
        batch = load_batch(rt.jobs, message)
    except ValidationError as exc:
        _dead_letter_unreadable(rt, message, _not_a_batch(exc))
        return
    except MissingBatchError as exc:
        _dead_letter_unreadable(rt, message, str(exc))
        return
    except RedisError as exc:
        # The batch is still pending (nothing was read or changed): try again later.
        raise self.retry(
            args=[message],
            kwargs={"first_failure_at": first_failure_at},
            exc=exc,
            countdown=retry_delay(retries, rt.settings),
        ) from exc
    if batch is None:
        log.info("batch already committed; redelivery ignored: %s", message)
        observe_batch(BatchOutcome(), committed=False, duration_s=0.0)
        return
    _wait_below_high_water(rt)
    try:
        if not rt.index_ready:
            ensure_index(rt.es, rt.settings)
            rt.index_ready = True
        with batch_in_progress():
            report = process_batch(
                batch,
                client=rt.es,
                jobs=rt.jobs,
                settings=rt.settings,
                attempt=retries,
                observe=observe_bulk_request,
            )
    except (Retry, Reject):
        raise
    except Exception as exc:
        now = time.time()
        if budget_spent(first_failure_at, now, rt.settings):
            reason = (
                f"gave up after {retries} retries over the retry budget of "
                f"{rt.settings.batch_retry_budget:.0f} s (MEDLINE_BATCH_RETRY_BUDGET); "
                f"last error: {describe_error(exc)}"
            )
            log.error(
                "batch %s exhausted: %s",
                batch.batch_id,
                reason,
                extra={
                    "event": "batch_exhausted",
                    "job_id": batch.job_id,
                    "batch_id": batch.batch_id,
                },
            )
            outcome = exhausted_outcome(batch, reason, retries + 1)
            committed = rt.jobs.commit_batch(batch.job_id, batch.batch_id, outcome)
            _account(rt, outcome, committed, 0.0, 0)
            return
        delay = retry_delay(retries, rt.settings)
        cause = retry_cause(exc)
        observe_retry(cause)
        error = describe_error(exc)
        log.warning(
            "batch %s: retry %d in %.1f s: %s",
            batch.batch_id,
            retries + 1,
            delay,
            error,
            extra={
                "event": "batch_retry",
                "job_id": batch.job_id,
                "batch_id": batch.batch_id,
                "retry": retries + 1,
                "delay_s": round(delay, 2),
                "cause": cause,
                "error": error,
            },
        )
        if "index_not_found" in str(exc):
            rt.index_ready = False
        raise self.retry(
            args=[message],
            kwargs={"first_failure_at": first_failure_at or now},
            exc=exc,
            countdown=delay,
        ) from exc
    _log_report(report, batch, retries)
    _account(rt, report.outcome, report.committed, report.duration_s, report.parsed)
    if report.committed and inbox_job_completed(rt.jobs, batch.job_id):
        # The inbox's next file waits for this job: scan now rather than at the next tick.
        app.send_task(SCAN_INBOX_TASK, queue=rt.settings.ingest_queue)


@app.task(name=SCAN_INBOX_TASK)
def scan_inbox_task() -> None:
    """Scan the inbox and enqueue what is due, in order; see :mod:`worker.inbox`."""
    rt = get_runtime()
    try:
        report = scan_inbox(
            rt.settings, client=rt.redis, jobs=rt.jobs, publish=batch_publisher(rt.settings)
        )
    except ConfigurationError as exc:
        log.error("inbox scan: %s", exc)
        return
    # A blocked inbox needs someone: later files wait until the file is fixed.
    log.log(
        logging.WARNING if report.blocked else logging.INFO,
        "inbox scan: %s",
        report.message or f"{len(report.enqueued)} files enqueued",
        extra={
            "event": "inbox_scan",
            "busy": report.busy,
            "enqueued": [item.name for item in report.enqueued],
            "waiting_on": report.waiting_on,
            "blocked": report.blocked,
            "awaiting_md5": report.awaiting_md5,
        },
    )
