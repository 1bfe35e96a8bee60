"""The exporter: broker-side gauges for Prometheus, served on ``/metrics`` at
``MEDLINE_METRICS_PORT`` by ``medline-ingest exporter``.

Each scrape gathers one fresh snapshot (:func:`worker.status.gather_status`, the same as
``medline-ingest status``) and turns it into gauges: queue depths, batches in flight, dead-letter
depths, the pause flag, throughput over 1/5/15 minutes, running jobs' progress and ETA, workers
alive, Elasticsearch health, the index's document count, and whether the inbox is blocked.
Nothing is cached between scrapes and no background thread polls. One exporter per deployment
is enough; more would only report the same figures twice.

A service that cannot be reached is reported by ``medline_redis_up`` or
``medline_elasticsearch_up`` = 0, and the gauges that depend on it are left out of the scrape
(rather than reported as 0, which would read as "queue empty"). The record and batch counters
come from the workers themselves (see :mod:`worker.metrics`).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from schemas.dead_letter import DEAD_LETTER_QUEUES
from schemas.ledger import ScanReport
from schemas.status import Status
from worker.settings import Settings
from worker.status import cluster_health_value

log = logging.getLogger(__name__)


def _gauge(
    name: str, documentation: str, value: float | None = None, **kw: Any
) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value, **kw)


def status_metrics(status: Status) -> Iterator[Metric]:
    """The gauges for one snapshot."""
    broker = status.broker
    yield _gauge("medline_redis_up", "1 if Redis (the broker) answered.", int(broker.reachable))
    if broker.reachable:
        yield _gauge(
            "medline_ingest_queue_depth",
            "Batches waiting in the ingest queue.",
            broker.ingest_queue_depth or 0,
        )
        yield _gauge(
            "medline_batches_unacked",
            "Messages of the ingest queue delivered to workers and not yet acknowledged "
            "(batches in flight, and batches waiting for a scheduled retry).",
            broker.unacked or 0,
        )
        yield _gauge(
            "medline_batches_pending",
            "Batches published and not yet committed: queued, running or retrying.",
            broker.pending or 0,
        )
        yield _gauge(
            "medline_batches_pending_limit",
            "MEDLINE_MAX_QUEUED_BATCHES of the exporter's settings: enqueue waits while "
            "medline_batches_pending is at or over it (0: no limit).",
            broker.pending_limit,
        )
        dead = _gauge(
            "medline_dead_letter_queue_depth",
            "Entries in each dead-letter queue.",
            labels=["queue"],
        )
        for queue in DEAD_LETTER_QUEUES:
            dead.add_metric([queue], (broker.dead_letters or {}).get(queue, 0))
        yield dead
        yield _gauge(
            "medline_ingest_paused",
            "1 while workers hold off because the dead letters reached the high-water mark.",
            int(broker.paused_reason is not None),
        )
    if status.throughput is not None:
        rate = _gauge(
            "medline_throughput_records_per_second",
            "Records per second over the last 1, 5 and 15 minutes (window); kind=indexed: written "
            "to the index, kind=done: reached their final place (indexed, dead-lettered, deleted, "
            "skipped as stale).",
            labels=["window", "kind"],
        )
        for window, value in status.throughput.indexed_per_second.items():
            rate.add_metric([window, "indexed"], value)
        for window, value in status.throughput.done_per_second.items():
            rate.add_metric([window, "done"], value)
        yield rate
    if broker.reachable:
        yield from _job_metrics(status)
    if status.inbox is not None:
        yield from _inbox_metrics(status.inbox)
    workers = status.workers
    if workers.reachable:
        yield _gauge(
            "medline_workers_alive",
            "Workers of the ingest queue that answered a remote-control ping within 1 s.",
            len(workers.alive),
        )
        yield _gauge(
            "medline_worker_processes",
            "Pool processes (or threads) of the workers alive: batches they can run at once.",
            workers.processes,
        )
    es = status.elasticsearch
    yield _gauge("medline_elasticsearch_up", "1 if Elasticsearch answered.", int(es.reachable))
    if es.reachable:
        health = cluster_health_value(es.cluster_health)
        if health is not None:
            yield _gauge(
                "medline_elasticsearch_cluster_health_status",
                "Elasticsearch cluster health: 0 green, 1 yellow, 2 red.",
                health,
            )
        if es.index_documents is not None:
            yield _gauge(
                "medline_index_documents",
                "Documents in the index behind the alias (as of its last refresh).",
                es.index_documents,
            )


def _inbox_metrics(inbox: ScanReport) -> Iterator[Metric]:
    yield _gauge(
        "medline_inbox_blocked",
        "1 while a file blocks the inbox (it failed three times, does not match its .md5, or "
        "would replay more than MEDLINE_INBOX_MAX_REPLAY files): later files wait until someone "
        "acts.",
        int(inbox.blocked is not None),
    )
    yield _gauge(
        "medline_inbox_awaiting_md5",
        "1 while the inbox waits for a file's .md5 (MEDLINE_INBOX_REQUIRE_MD5).",
        int(inbox.awaiting_md5 is not None),
    )
    if inbox.finished_at is not None:
        yield _gauge(
            "medline_inbox_last_scan_timestamp_seconds",
            "When the last inbox scan finished (Unix time).",
            inbox.finished_at.timestamp(),
        )


def _job_metrics(status: Status) -> Iterator[Metric]:
    jobs = status.running_jobs
    yield _gauge("medline_jobs_running", "Jobs enqueuing or running.", len(jobs))
    families = {
        "records": _gauge(
            "medline_job_records",
            "Records of a running job (final once it is enqueued).",
            labels=["job_id"],
        ),
        "done": _gauge(
            "medline_job_records_done",
            "Records of a running job that reached their final place.",
            labels=["job_id"],
        ),
        "elapsed_s": _gauge(
            "medline_job_elapsed_seconds", "Seconds since a running job started.", labels=["job_id"]
        ),
        "eta_s": _gauge(
            "medline_job_eta_seconds",
            "Seconds until a running job is done, at its average rate so far.",
            labels=["job_id"],
        ),
        "expected_duration_s": _gauge(
            "medline_job_expected_duration_seconds",
            "A running job's whole duration as predicted once it was a tenth done; compare with "
            "medline_job_elapsed_seconds.",
            labels=["job_id"],
        ),
    }
    for job in jobs:
        for field, family in families.items():
            value = getattr(job, field)
            if value is not None:
                family.add_metric([job.job_id], value)
    yield from families.values()


class StatusCollector(Collector):
    """Gathers a snapshot at each scrape (one at a time) and yields its gauges."""

    def __init__(self, gather: Callable[[], Status]) -> None:
        self._gather = gather
        self._lock = threading.Lock()
        self._errors: dict[str, str | None] = {}

    def collect(self) -> Iterable[Metric]:
        started = time.perf_counter()
        with self._lock:
            status = self._gather()
            self._log_changes(status)
        metrics = list(status_metrics(status))
        metrics.append(
            _gauge(
                "medline_exporter_scrape_duration_seconds",
                "Seconds the exporter took to gather this scrape.",
                round(time.perf_counter() - started, 4),
            )
        )
        return metrics

    def _log_changes(self, status: Status) -> None:
        """Log a service going away or coming back, once, not at every scrape."""
        for part, error in (
            ("redis", status.broker.error),
            ("elasticsearch", status.elasticsearch.error),
            ("workers", status.workers.error),
        ):
            before = self._errors.get(part)
            if error and error != before:
                log.warning("%s", error, extra={"event": "exporter_source_error", "source": part})
            elif before and not error:
                log.info("%s answers again", part, extra={"event": "exporter_source_ok"})
            self._errors[part] = error


def build_registry(gather: Callable[[], Status]) -> CollectorRegistry:
    """A registry with the status gauges and the exporter's own process metrics."""
    from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR

    registry = CollectorRegistry()
    registry.register(StatusCollector(gather))
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    return registry


def status_gatherer(settings: Settings) -> Callable[[], Status]:
    """Gathers snapshots with clients built once and timeouts that fit a scrape."""
    from worker.celery_app import app
    from worker.es_client import make_client
    from worker.status import fast_redis, gather_status, inspect_workers

    redis_client = fast_redis(settings)
    es_client = make_client(settings)

    def gather() -> Status:
        return gather_status(
            settings,
            redis_client=redis_client,
            es_client=es_client,
            workers=lambda: inspect_workers(app, settings),
        )

    return gather


def run_exporter(settings: Settings, port: int, host: str = "0.0.0.0") -> None:
    """Serve ``/metrics`` until SIGTERM or SIGINT."""
    registry = build_registry(status_gatherer(settings))
    server, _ = start_http_server(port, addr=host, registry=registry)
    stop = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        log.info("exporter stopping (%s)", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info(
        "exporter serving http://%s:%d/metrics",
        host,
        port,
        extra={"event": "exporter_started", "port": port},
    )
    stop.wait()
    server.shutdown()
