"""Prometheus metrics of the workers: records and batches counted where they are processed.

Prefork safety
--------------
A worker is one main process and N pool processes forked from it; the batches run in the pool
processes, and Prometheus scrapes one address per worker. prometheus-client's multiprocess mode
answers that: each process writes its values to memory-mapped files in the directory named by
``PROMETHEUS_MULTIPROC_DIR``, and the worker's main process serves ``/metrics`` (on
``MEDLINE_WORKER_METRICS_PORT``, default 9809) by summing the files of every process, living or
dead, so a pool process that is replaced does not take its counts with it.

- :func:`prepare_multiprocess` runs in the main process at Celery's ``worker_init`` (before the
  pool forks): it creates a directory private to this worker, under ``PROMETHEUS_MULTIPROC_DIR``
  if that is set (else the system's temporary directory), points ``PROMETHEUS_MULTIPROC_DIR`` at
  it for the pool processes, and removes it when the worker exits (a killed worker's is removed
  when the next one starts). Two workers on one host never share files, and a restarted worker
  starts from zero (Prometheus' ``rate()`` handles resets).
- The metrics are created after that (lazily, by :func:`get_metrics`), so their values live in
  those files whatever imported prometheus-client first; every series starts at zero.
- At Celery's ``worker_ready`` the main process starts the HTTP server. A port already taken is
  logged and skipped: metrics must never stop ingestion.
- The one gauge (batches in progress, ``livesum``) is cleared for a pool process that exits
  (``worker_process_shutdown``) and, at each scrape, for any process no longer alive (one that
  was SIGKILLed never ran its shutdown).

Labels stay bounded: a dead-letter reason becomes one of a few classes (:func:`reason_class`),
a retry's cause one of a few causes (:func:`retry_cause`); raw text never becomes a label.

Every helper the task calls swallows its own errors: a metric that cannot be written is logged
at debug level, never a reason to retry or lose a batch.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import elastic_transport
import redis
from celery.signals import worker_init, worker_process_init, worker_process_shutdown, worker_ready
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.registry import Collector

from schemas.dead_letter import DeadLetter
from worker.bulk_indexer import TransientBulkError
from worker.jobs import BatchOutcome

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Seconds a batch can take, parse to commit: a few ms for a small batch, minutes for a large
#: one retrying item rejections against a slow cluster.
BATCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
#: Seconds of one _bulk request.
BULK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

#: Dead-letter reason classes, per queue; anything else is ``other``.
REASON_CLASSES = {
    "malformed": (
        "too_large",
        "no_parser",
        "parser_error",
        "unreadable_message",
        "invalid_fields",
        "not_parseable",
    ),
    "rejected": ("mapping", "illegal_argument", "too_large", "other"),
    "exhausted": ("retry_budget", "max_deliveries", "other"),
}
#: Causes of a batch retry.
RETRY_CAUSES = (
    "es_unreachable",
    "es_overloaded",
    "es_error",
    "index_missing",
    "redis_unreachable",
    "other",
)
#: Elasticsearch error types of a refused document, by class.
_REJECTION_CLASSES = {
    "mapper_parsing_exception": "mapping",
    "document_parsing_exception": "mapping",
    "strict_dynamic_mapping_exception": "mapping",
    "illegal_argument_exception": "illegal_argument",
    "content_too_long_exception": "too_large",
}
_ES_TYPE = re.compile(r"Elasticsearch refused the document \(\d+\): ([a-z_]+)")


class WorkerMetrics:
    """The workers' metrics, in ``registry`` (values in multiprocess files when enabled)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.registry = registry
        self.records_parsed = Counter(
            "medline_records_parsed_total",
            "Records parsed and validated into a document or a deletion.",
            registry=registry,
        )
        self.records_indexed = Counter(
            "medline_records_indexed_total",
            "Records written to the index (committed batches only).",
            registry=registry,
        )
        self.records_dead_lettered = Counter(
            "medline_records_dead_lettered_total",
            "Records put in a dead-letter queue, by queue and reason class.",
            ["queue", "reason"],
            registry=registry,
        )
        self.records_deleted = Counter(
            "medline_records_deleted_total",
            "Citations deleted by DeleteCitation entries.",
            registry=registry,
        )
        self.records_skipped_stale = Counter(
            "medline_records_skipped_stale_total",
            "Records not written because the index holds a newer revision (or, for a delete, "
            "a later version of the citation).",
            registry=registry,
        )
        self.batches_processed = Counter(
            "medline_batches_processed_total",
            "Batches finished, by outcome: committed, exhausted (the whole batch dead-lettered), "
            "duplicate (a redelivery of a batch already committed), unreadable.",
            ["outcome"],
            registry=registry,
        )
        self.batches_retried = Counter(
            "medline_batches_retried_total",
            "Batch retries scheduled, by cause.",
            ["cause"],
            registry=registry,
        )
        self.batch_duration = Histogram(
            "medline_batch_duration_seconds",
            "Seconds from taking a batch to committing its outcome.",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.bulk_duration = Histogram(
            "medline_bulk_request_duration_seconds",
            "Seconds of each _bulk request to Elasticsearch.",
            buckets=BULK_BUCKETS,
            registry=registry,
        )
        self.bulk_bytes = Counter(
            "medline_bulk_request_bytes_total",
            "Bytes sent in _bulk request bodies.",
            registry=registry,
        )
        self.batches_in_progress = Gauge(
            "medline_batches_in_progress",
            "Batches being processed right now.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        # Zero series for every label value, so rate() and alerts see 0, not nothing.
        for queue, classes in REASON_CLASSES.items():
            for reason in classes:
                self.records_dead_lettered.labels(queue, reason)
        for outcome in ("committed", "exhausted", "duplicate", "unreadable"):
            self.batches_processed.labels(outcome)
        for cause in RETRY_CAUSES:
            self.batches_retried.labels(cause)


_metrics: WorkerMetrics | None = None


def get_metrics() -> WorkerMetrics:
    """This process's metrics, created on first use (after :func:`prepare_multiprocess`)."""
    global _metrics
    if _metrics is None:
        _metrics = WorkerMetrics()
    return _metrics


# --- classification ------------------------------------------------------------------------------


def reason_class(entry: DeadLetter) -> str:
    """A few words for why the entry was dead-lettered, from a bounded set per queue."""
    reason = entry.reason
    if entry.queue == "malformed":
        if reason.startswith("record too large"):
            return "too_large"
        if reason.startswith("no parser"):
            return "no_parser"
        if reason.startswith("internal parser error"):
            return "parser_error"
        if reason.startswith("message is not a batch"):
            return "unreadable_message"
        return "invalid_fields" if entry.errors else "not_parseable"
    if entry.queue == "rejected":
        error_type = (entry.es_error or {}).get("type")
        if not error_type:
            found = _ES_TYPE.match(reason)
            error_type = found.group(1) if found else None
        return _REJECTION_CLASSES.get(error_type or "", "other")
    if reason.startswith("gave up after"):
        return "retry_budget"
    if reason.startswith("batch delivered"):
        return "max_deliveries"
    return "other"


def retry_cause(exc: BaseException) -> str:
    """Why a batch is retried, as one of :data:`RETRY_CAUSES`."""
    if "index_not_found" in str(exc):
        return "index_missing"
    if isinstance(exc, redis.RedisError):
        return "redis_unreachable"
    cause = exc.__cause__ if isinstance(exc, TransientBulkError) else exc
    if isinstance(cause, elastic_transport.ConnectionError | elastic_transport.ConnectionTimeout):
        return "es_unreachable"
    if isinstance(cause, elastic_transport.ApiError):
        return "es_overloaded" if cause.meta.status == 429 else "es_error"
    if isinstance(exc, TransientBulkError):
        text = str(exc)
        if "429" in text:
            return "es_overloaded"
        if "unreachable" in text or "timed out" in text or "timeout" in text.lower():
            return "es_unreachable"
        return "es_error"
    return "other"


# --- what the task calls -------------------------------------------------------------------------


def _safely(what: str) -> Any:
    """Decorator: never let a metric break a batch."""

    def wrap(function: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            except Exception:
                log.debug("could not record metrics (%s)", what, exc_info=True)
                return None

        call.__name__ = function.__name__
        call.__doc__ = function.__doc__
        return call

    return wrap


def _count_dead_letters(m: WorkerMetrics, entries: Iterable[DeadLetter]) -> None:
    for entry in entries:
        m.records_dead_lettered.labels(entry.queue, reason_class(entry)).inc(len(entry.records))


@_safely("batch")
def observe_batch(
    outcome: BatchOutcome, *, committed: bool, duration_s: float, parsed: int = 0
) -> None:
    """Count a finished batch. Records are counted only when its outcome was committed now, so
    the counters agree with the jobs' accounting even when a batch is delivered twice."""
    m = get_metrics()
    if not committed:
        m.batches_processed.labels("duplicate").inc()
        return
    exhausted = any(d.queue == "exhausted" for d in outcome.dead_letters)
    m.batches_processed.labels("exhausted" if exhausted else "committed").inc()
    m.records_parsed.inc(parsed)
    m.records_indexed.inc(outcome.indexed)
    m.records_deleted.inc(outcome.deleted)
    m.records_skipped_stale.inc(outcome.skipped_stale)
    _count_dead_letters(m, outcome.dead_letters)
    if duration_s > 0:
        m.batch_duration.observe(duration_s)


@_safely("unreadable message")
def observe_unreadable(entry: DeadLetter) -> None:
    """Count a message that was not a batch at all (dead-lettered as malformed)."""
    m = get_metrics()
    m.batches_processed.labels("unreadable").inc()
    _count_dead_letters(m, [entry])


@_safely("retry")
def observe_retry(cause: str) -> None:
    """Count a scheduled retry; ``cause`` from :func:`retry_cause`."""
    get_metrics().batches_retried.labels(cause if cause in RETRY_CAUSES else "other").inc()


@_safely("bulk request")
def observe_bulk_request(body_bytes: int, seconds: float) -> None:
    """The bulk indexer's request observer: latency and bytes of each _bulk request."""
    m = get_metrics()
    m.bulk_duration.observe(seconds)
    m.bulk_bytes.inc(body_bytes)


@contextmanager
def batch_in_progress() -> Iterator[None]:
    """Count the batch as in progress while the block runs."""
    gauge = None
    try:
        gauge = get_metrics().batches_in_progress
        gauge.inc()
    except Exception:
        log.debug("could not record metrics (in progress)", exc_info=True)
    try:
        yield
    finally:
        if gauge is not None:
            try:
                gauge.dec()
            except Exception:
                log.debug("could not record metrics (in progress)", exc_info=True)


# --- multiprocess mode and the worker's /metrics -------------------------------------------------

_owned_dir: tuple[int, Path] | None = None


def prepare_multiprocess(base: str | None = None) -> Path:
    """Give this worker a private, empty multiprocess directory (see the module's docstring).

    :param base: where to create it; default ``PROMETHEUS_MULTIPROC_DIR`` if set, else the
        system's temporary directory.
    :returns: the directory, now also in ``PROMETHEUS_MULTIPROC_DIR``.
    """
    global _owned_dir
    if _owned_dir is not None and _owned_dir[0] == os.getpid():
        return _owned_dir[1]
    parent = base or os.environ.get(MULTIPROC_ENV) or tempfile.gettempdir()
    Path(parent).mkdir(parents=True, exist_ok=True)
    _remove_stale_dirs(Path(parent))
    path = Path(tempfile.mkdtemp(prefix=f"{_DIR_PREFIX}{os.getpid()}-", dir=parent))
    os.environ[MULTIPROC_ENV] = str(path)
    # prometheus-client picks its value class when first imported; pick again now.
    values.ValueClass = values.get_value_class()
    _owned_dir = (os.getpid(), path)
    atexit.register(_remove_owned_dir)
    return path


_DIR_PREFIX = "medline-worker-"
_DIR_NAME = re.compile(rf"^{_DIR_PREFIX}(\d+)-")


def _remove_stale_dirs(parent: Path) -> None:
    """Remove the directories of workers that were killed before they could (SIGKILL, OOM):
    those whose process is gone, or whose pid is now ours (a restarted container)."""
    for child in parent.glob(f"{_DIR_PREFIX}*"):
        found = _DIR_NAME.match(child.name)
        if found and child.is_dir():
            pid = int(found.group(1))
            if pid == os.getpid() or not _pid_alive(pid):
                shutil.rmtree(child, ignore_errors=True)


def _remove_owned_dir() -> None:
    if _owned_dir is not None and _owned_dir[0] == os.getpid():
        shutil.rmtree(_owned_dir[1], ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LiveMultiProcessCollector(Collector):
    """Sums every process's files, after clearing the live gauges of processes that are gone."""

    _LIVE_FILE = re.compile(r"^gauge_live\w+?_(\d+)\.db$")

    def __init__(self, path: str) -> None:
        from prometheus_client.multiprocess import MultiProcessCollector

        self.path = path
        self._collector = MultiProcessCollector(None, path=path)

    def collect(self) -> Iterable[Any]:
        from prometheus_client import multiprocess

        for name in os.listdir(self.path):
            found = self._LIVE_FILE.match(name)
            if found and not _pid_alive(int(found.group(1))):
                multiprocess.mark_process_dead(int(found.group(1)), self.path)
        return self._collector.collect()


def serve_worker_metrics(port: int, addr: str = "0.0.0.0") -> Any:
    """Serve the summed metrics of this worker's processes on ``port``; returns the server, or
    None when the port cannot be bound (logged) or multiprocess mode is off."""
    from prometheus_client import start_http_server

    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        log.warning("worker metrics not served: %s is not set", MULTIPROC_ENV)
        return None
    registry = CollectorRegistry()
    registry.register(LiveMultiProcessCollector(path))
    try:
        server, _ = start_http_server(port, addr=addr, registry=registry)
    except OSError as exc:
        log.warning(
            "worker metrics not served: port %d: %s (MEDLINE_WORKER_METRICS_PORT)",
            port,
            exc.strerror or exc,
            extra={"event": "worker_metrics_unavailable", "port": port},
        )
        return None
    log.info(
        "worker metrics on http://%s:%d/metrics",
        addr,
        port,
        extra={"event": "worker_metrics", "port": port},
    )
    return server


@worker_init.connect
def _multiprocess_before_fork(**_: Any) -> None:
    prepare_multiprocess()
    # Write every series at zero now, so the first scrape sees them before the first batch.
    get_metrics()


_server: Any = None


@worker_ready.connect
def _serve_after_ready(**_: Any) -> None:
    global _server
    from worker.runtime import get_runtime

    port = get_runtime().settings.worker_metrics_port
    if port:
        _server = serve_worker_metrics(port)


@worker_process_init.connect
def _close_inherited_listener(**_: Any) -> None:
    # A pool process forked after the server started holds a copy of its socket; an orphaned
    # one would keep the port from the next worker.
    if _server is not None:
        with contextlib.suppress(OSError):
            _server.socket.close()


@worker_process_shutdown.connect
def _pool_process_exits(pid: int | None = None, **_: Any) -> None:
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid(), path)
