"""Gather one snapshot of the pipeline for ``medline-ingest status`` and the exporter.

Plain functions over clients that the caller builds; each part of the snapshot is read on its
own, so Redis down still reports Elasticsearch, and the other way round. Nothing here raises for
a service that cannot be reached: the part's ``error`` says so in plain words (see
:mod:`schemas.status`).

Throughput comes from per-minute counters that the workers increment when they commit a batch
(:func:`record_throughput`): a hash ``{prefix}:rate:{minute}`` with fields ``indexed`` and
``done``, expiring after :data:`RATE_TTL` seconds, so the keys never pile up.

The expected duration of a running job (for the "job far beyond its ETA" alert) is predicted
once, when the job is first seen at least :data:`EXPECTED_AT_FRACTION` done, and kept in
``{prefix}:eta:{job_id}``: a prediction that moved with the job could never be overrun.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import elastic_transport
import redis
from elasticsearch import Elasticsearch

from schemas.dead_letter import DEAD_LETTER_QUEUES
from schemas.job import JobSummary
from schemas.ledger import ScanReport
from schemas.status import (
    THROUGHPUT_WINDOWS,
    BrokerStatus,
    ElasticsearchStatus,
    JobProgress,
    Status,
    Throughput,
    WorkerInfo,
    WorkersStatus,
)
from worker.dead_letters import PAUSED_KEY
from worker.jobs import JobStore, summary_from_hash
from worker.log_setup import redact
from worker.reaper import UNACKED_KEY, unacked_routing_key
from worker.settings import Settings, redact_url

#: Seconds a per-minute throughput counter lives: the longest window plus a margin.
RATE_TTL = 20 * 60
#: kombu's Redis transport puts a message of priority p > 0 in list ``{queue}\x06\x16{p}``.
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (3, 6, 9)
#: Jobs read to find the running ones (newest first); a job older than this many newer jobs is
#: not reported.
JOBS_SCANNED = 100
#: Finished jobs shown as recent.
RECENT_JOBS = 5
#: Fraction of a job done at which its whole duration is predicted and remembered.
EXPECTED_AT_FRACTION = 0.1
#: Seconds the remembered prediction is kept.
EXPECTED_TTL = 30 * 24 * 3600
#: Seconds to wait for Redis, Elasticsearch and the workers' replies.
DEFAULT_TIMEOUT = 3.0
#: Seconds the workers get to answer the broadcast.
WORKER_REPLY_TIMEOUT = 1.0

_CLUSTER_HEALTH = ("green", "yellow", "red")


# --- throughput counters (written by the workers) ------------------------------------------------


def rate_key(settings: Settings, minute: int) -> str:
    return settings.key("rate", str(minute))


def record_throughput(
    client: redis.Redis, settings: Settings, *, indexed: int, done: int, now: float | None = None
) -> None:
    """Add a committed batch's records to this minute's counters.

    :param indexed: records written to the index.
    :param done: records that reached their final place (indexed, dead-lettered, deleted,
        skipped as stale).
    """
    if indexed <= 0 and done <= 0:
        return
    key = rate_key(settings, int((time.time() if now is None else now) // 60))
    pipe = client.pipeline(transaction=False)
    pipe.hincrby(key, "indexed", indexed)
    pipe.hincrby(key, "done", done)
    pipe.expire(key, RATE_TTL)
    pipe.execute()


def read_throughput(
    client: redis.Redis, settings: Settings, now: float | None = None
) -> Throughput:
    """Records per second over each window of :data:`THROUGHPUT_WINDOWS` minutes.

    A window of N minutes covers the current, partial minute, the N-1 before it, and the part
    of the minute before those that falls inside the window (its count pro rata), so the rate
    does not jump at each minute boundary.
    """
    now = time.time() if now is None else now
    minute = int(now // 60)
    longest = max(THROUGHPUT_WINDOWS)
    pipe = client.pipeline(transaction=False)
    for back in range(longest + 1):
        pipe.hmget(rate_key(settings, minute - back), "indexed", "done")
    buckets = [(int(i or 0), int(d or 0)) for i, d in pipe.execute()]
    into_minute = (now - minute * 60) / 60
    result = Throughput()
    for window in THROUGHPUT_WINDOWS:
        whole = buckets[:window]
        partial = buckets[window]
        weight = 1 - into_minute
        seconds = window * 60
        label = f"{window}m"
        indexed = sum(b[0] for b in whole) + partial[0] * weight
        done = sum(b[1] for b in whole) + partial[1] * weight
        result.indexed_per_second[label] = indexed / seconds
        result.done_per_second[label] = done / seconds
    return result


# --- broker --------------------------------------------------------------------------------------


def fast_redis(settings: Settings, timeout: float = DEFAULT_TIMEOUT) -> redis.Redis:
    """The client a status report or a scrape reads with: see
    :func:`worker.redis_client.make_probe_redis`."""
    from worker.redis_client import make_probe_redis

    return make_probe_redis(settings, timeout)


def queue_keys(queue: str) -> list[str]:
    """The Redis lists that hold a Celery queue's messages, one per priority step."""
    return [queue, *(f"{queue}{PRIORITY_SEPARATOR}{p}" for p in PRIORITY_STEPS)]


def redis_error(settings: Settings, exc: Exception) -> str:
    return redact(f"Redis at {redact_url(settings.broker_url)} cannot be reached: {exc}")


def broker_status(client: redis.Redis, settings: Settings) -> BrokerStatus:
    """Queue depth, unacknowledged and pending batches, dead letters, the pause flag."""
    status = BrokerStatus(
        url=redact_url(settings.broker_url),
        reachable=False,
        ingest_queue=settings.ingest_queue,
        pending_limit=settings.max_queued_batches,
    )
    try:
        pipe = client.pipeline(transaction=False)
        keys = queue_keys(settings.ingest_queue)
        for key in keys:
            pipe.llen(key)
        # Every queue of the database shares kombu's hash: count the ingest queue's entries.
        pipe.hvals(UNACKED_KEY)
        # Published and not committed: what enqueue's MEDLINE_MAX_QUEUED_BATCHES counts too.
        pipe.zcard(JobStore(client, settings).inflight_key)
        for queue in DEAD_LETTER_QUEUES:
            pipe.llen(settings.key("dlq", queue))
        pipe.get(settings.key(PAUSED_KEY))
        replies = pipe.execute()
    except redis.RedisError as exc:
        status.error = redis_error(settings, exc)
        return status
    depths = replies[: len(keys)]
    unacked, pending = replies[len(keys) : len(keys) + 2]
    dead = replies[len(keys) + 2 : len(keys) + 2 + len(DEAD_LETTER_QUEUES)]
    paused = replies[-1]
    status.reachable = True
    status.ingest_queue_depth = sum(int(d) for d in depths)
    status.unacked = sum(unacked_routing_key(entry) == settings.ingest_queue for entry in unacked)
    status.pending = int(pending)
    status.dead_letters = dict(zip(DEAD_LETTER_QUEUES, map(int, dead), strict=True))
    status.paused_reason = paused.decode() if paused else None
    return status


# --- jobs ----------------------------------------------------------------------------------------


def job_summaries(client: redis.Redis, settings: Settings, limit: int) -> list[JobSummary]:
    """The newest ``limit`` jobs, newest first, read in one round trip."""
    ids = [i.decode() for i in client.zrevrange(settings.key("jobs"), 0, limit - 1)]
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hgetall(settings.key("job", job_id))
    hashes = pipe.execute()
    return [summary_from_hash(j, h) for j, h in zip(ids, hashes, strict=True) if h]


def job_progress(
    summary: JobSummary, now: datetime, expected_duration_s: float | None = None
) -> JobProgress:
    """Progress, rate and ETA of a job at ``now``."""
    elapsed = None
    if summary.started_at is not None:
        end = summary.finished_at or now
        elapsed = max(0.0, (end - summary.started_at).total_seconds())
    rate = summary.done / elapsed if elapsed else None
    total_known = summary.state != "enqueuing"
    percent = None
    if total_known and summary.records:
        percent = round(100 * summary.done / summary.records, 1)
    elif total_known and summary.state == "completed":
        percent = 100.0
    eta = None
    if summary.state == "running" and rate and summary.records:
        eta = round(max(0, summary.records - summary.done) / rate, 1)
    return JobProgress(
        job_id=summary.job_id,
        state=summary.state,
        sources=summary.sources,
        records=summary.records,
        done=summary.done,
        indexed=summary.indexed,
        dead_lettered=summary.dead_lettered,
        percent=percent,
        started_at=summary.started_at,
        finished_at=summary.finished_at,
        elapsed_s=round(elapsed, 1) if elapsed is not None else None,
        rate=round(rate, 3) if rate is not None else None,
        eta_s=eta,
        expected_duration_s=expected_duration_s,
    )


def remember_expected_durations(
    client: redis.Redis, settings: Settings, running: list[JobProgress]
) -> None:
    """Fill in each running job's predicted whole duration, predicting it once (see the
    module's docstring)."""
    if not running:
        return
    predicting = [_ready_to_predict(job) for job in running]
    pipe = client.pipeline(transaction=False)
    for job, predict in zip(running, predicting, strict=True):
        key = settings.key("eta", job.job_id)
        if predict:
            assert job.elapsed_s is not None
            predicted = round(job.elapsed_s * job.records / job.done, 1)
            pipe.set(key, predicted, nx=True, ex=EXPECTED_TTL)
        pipe.get(key)
    replies = iter(pipe.execute())
    for job, predict in zip(running, predicting, strict=True):
        if predict:
            next(replies)  # the SET's answer; the GET's follows
        value = next(replies)
        job.expected_duration_s = float(value) if value is not None else None


def _ready_to_predict(job: JobProgress) -> bool:
    return (
        job.state == "running"
        and bool(job.elapsed_s)
        and job.records > 0
        and job.done >= EXPECTED_AT_FRACTION * job.records
    )


def jobs_status(
    client: redis.Redis, settings: Settings, now: datetime
) -> tuple[list[JobProgress], list[JobProgress]]:
    """(running jobs, recent finished jobs), newest first."""
    summaries = job_summaries(client, settings, JOBS_SCANNED)
    running = [job_progress(s, now) for s in summaries if s.state in ("enqueuing", "running")]
    recent = [job_progress(s, now) for s in summaries if s.state in ("completed", "failed")]
    remember_expected_durations(client, settings, running)
    return running, recent[:RECENT_JOBS]


# --- workers -------------------------------------------------------------------------------------


def inspect_workers(
    app: Any, settings: Settings, timeout: float = WORKER_REPLY_TIMEOUT
) -> WorkersStatus:
    """The workers that answer a remote-control broadcast within ``timeout`` seconds, with their
    pool size, keeping those that consume the ingest queue (or did not say what they consume).

    The same question as the health probe: the worker's main process answers, so a worker whose
    consumer is wedged counts as dead even if its processes exist.
    """
    answers: dict[str, Any] = {}

    def ask(what: str) -> None:
        try:
            answers[what] = getattr(app.control.inspect(timeout=timeout), what)() or {}
        except Exception as exc:  # broker trouble: reported, never raised
            answers[what + "_error"] = exc

    threads = [
        threading.Thread(target=ask, args=(w,), daemon=True) for w in ("stats", "active_queues")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + DEFAULT_TIMEOUT)
    if "stats" not in answers:
        error = answers.get("stats_error")
        reason = f"the broadcast failed: {error}" if error else "the broadcast did not return"
        return WorkersStatus(reachable=False, error=redact(reason))
    stats: dict[str, Any] = answers["stats"]
    queues: dict[str, Any] = answers.get("active_queues", {})
    alive = []
    for name in sorted(stats):
        pool = stats[name].get("pool") or {}
        concurrency = pool.get("max-concurrency")
        names = [q.get("name") for q in queues.get(name, [])] if name in queues else None
        if names is not None and settings.ingest_queue not in names:
            continue  # a worker of another pipeline sharing this broker database
        alive.append(
            WorkerInfo(
                name=name,
                concurrency=int(concurrency) if isinstance(concurrency, int) else None,
                pool=_pool_name(pool.get("implementation")),
                queues=names,
            )
        )
    return WorkersStatus(reachable=True, alive=alive)


def _pool_name(implementation: Any) -> str | None:
    """``celery.concurrency.prefork:TaskPool`` → ``prefork``."""
    if not isinstance(implementation, str):
        return None
    return implementation.rsplit(":", 1)[0].rsplit(".", 1)[-1]


# --- Elasticsearch -------------------------------------------------------------------------------


def es_error(settings: Settings, exc: Exception) -> str:
    url = redact_url(settings.es_url)
    if isinstance(exc, elastic_transport.ApiError):
        return redact(f"Elasticsearch at {url} answered {exc.meta.status}: {exc.message}")
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return redact(f"Elasticsearch at {url} cannot be reached: {message}")


def es_status(
    client: Elasticsearch, settings: Settings, timeout: float = DEFAULT_TIMEOUT
) -> ElasticsearchStatus:
    """Cluster health and the document count of the index behind the alias."""
    status = ElasticsearchStatus(
        url=redact_url(settings.es_url), reachable=False, index=settings.index
    )
    es = client.options(request_timeout=timeout, max_retries=0)
    try:
        health = es.cluster.health()
    except Exception as exc:
        status.error = es_error(settings, exc)
        return status
    status.reachable = True
    color = health.get("status")
    status.cluster_health = color if color in _CLUSTER_HEALTH else None
    try:
        status.index_documents = int(es.count(index=settings.index)["count"])
    except elastic_transport.ApiError as exc:
        if exc.meta.status != 404:
            status.error = es_error(settings, exc)
    except Exception as exc:
        status.error = es_error(settings, exc)
    return status


def cluster_health_value(health: str | None) -> int | None:
    """0 green, 1 yellow, 2 red: the gauge's value."""
    return _CLUSTER_HEALTH.index(health) if health in _CLUSTER_HEALTH else None


# --- all of it -----------------------------------------------------------------------------------


def inbox_status(client: redis.Redis, settings: Settings) -> ScanReport | None:
    """The last inbox scan's report, or None if no scan ran yet.

    :raises redis.RedisError: Redis did not answer.
    """
    from worker.inbox import Ledger  # the scanner's modules, only when a status is asked for

    return Ledger(client, settings).last_report()


def gather_status(
    settings: Settings,
    *,
    redis_client: redis.Redis,
    es_client: Elasticsearch,
    workers: Callable[[], WorkersStatus],
    now: float | None = None,
) -> Status:
    """One snapshot: broker, throughput, jobs, workers, Elasticsearch, the last inbox scan.

    :param workers: asks the workers (:func:`inspect_workers` with the Celery app); called only
        when Redis answered, since the broadcast goes through it.
    """
    now = time.time() if now is None else now
    moment = datetime.fromtimestamp(now, UTC)
    broker = broker_status(redis_client, settings)
    throughput = None
    running: list[JobProgress] = []
    recent: list[JobProgress] = []
    inbox = None
    if broker.reachable:
        try:
            throughput = read_throughput(redis_client, settings, now)
            running, recent = jobs_status(redis_client, settings, moment)
            inbox = inbox_status(redis_client, settings)
        except redis.RedisError as exc:
            broker.reachable = False
            broker.error = redis_error(settings, exc)
    if broker.reachable:
        worker_status = workers()
    else:
        worker_status = WorkersStatus(reachable=False, error="not asked: the broker is unreachable")
    return Status(
        generated_at=moment,
        broker=broker,
        throughput=throughput,
        running_jobs=running,
        recent_jobs=recent,
        workers=worker_status,
        elasticsearch=es_status(es_client, settings),
        inbox=inbox,
    )
