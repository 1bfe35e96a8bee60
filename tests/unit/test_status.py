"""Gathering the status snapshot (fakeredis, fake Elasticsearch and Celery clients), its
rendering, and the ``status`` command when the services cannot be reached."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import fakeredis
import orjson
import pytest
from elasticsearch import Elasticsearch
from rich.console import Console

from schemas.ledger import ScanReport
from schemas.status import WorkersStatus
from tests.helpers import api_error, dead_letter, run_cli
from worker.cli_ops import render_status
from worker.dead_letters import DeadLetterStore
from worker.inbox import Ledger
from worker.jobs import BatchOutcome, JobStore
from worker.settings import Settings
from worker.status import (
    EXPECTED_AT_FRACTION,
    RATE_TTL,
    broker_status,
    es_status,
    fast_redis,
    gather_status,
    inspect_workers,
    jobs_status,
    rate_key,
    read_throughput,
    record_throughput,
)

#: A moment on a minute boundary plus 30 s, so windows and pro-rata weights are exact.
NOW = 1_800_000_000.0 + 30


@pytest.fixture
def settings() -> Settings:
    return Settings(key_prefix="t", ingest_queue="q", index="idx")


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


class FakeES:
    """Just enough of the Elasticsearch client for :func:`es_status`."""

    def __init__(self, health: Any = "green", count: Any = 42) -> None:
        self._health = health
        self._count = count
        self.cluster = self

    def options(self, **_: Any) -> FakeES:
        return self

    def health(self) -> dict[str, Any]:
        if isinstance(self._health, Exception):
            raise self._health
        return {"status": self._health}

    def count(self, index: str) -> dict[str, Any]:
        if isinstance(self._count, Exception):
            raise self._count
        return {"count": self._count}


# --- throughput ----------------------------------------------------------------------------------


def test_throughput_over_each_window_from_the_minute_counters(
    client: fakeredis.FakeRedis, settings: Settings
) -> None:
    minute = int(NOW // 60)
    record_throughput(client, settings, indexed=60, done=90, now=NOW)  # this minute
    record_throughput(client, settings, indexed=120, done=120, now=NOW - 60)  # 1 min before
    record_throughput(client, settings, indexed=600, done=600, now=NOW - 4 * 60)  # 4 min before
    record_throughput(client, settings, indexed=900, done=900, now=NOW - 15 * 60)  # 15 min before
    assert client.ttl(rate_key(settings, minute)) == RATE_TTL
    rates = read_throughput(client, settings, now=NOW)
    # 1m: this minute's 60 + half of the minute before (30 s of it fall in the window).
    assert rates.indexed_per_second["1m"] == pytest.approx((60 + 120 / 2) / 60, abs=1e-3)
    assert rates.done_per_second["1m"] == pytest.approx((90 + 120 / 2) / 60, abs=1e-3)
    # 5m: the whole of the last 5 minutes; the one before them is empty.
    assert rates.indexed_per_second["5m"] == pytest.approx((60 + 120 + 600) / 300, abs=1e-3)
    # 15m: the oldest bucket (15 min before) counts half.
    assert rates.indexed_per_second["15m"] == pytest.approx(
        (60 + 120 + 600 + 900 / 2) / 900, abs=1e-3
    )


def test_no_counters_means_zero_and_empty_batches_write_nothing(
    client: fakeredis.FakeRedis, settings: Settings
) -> None:
    record_throughput(client, settings, indexed=0, done=0, now=NOW)
    assert client.keys("*") == []
    rates = read_throughput(client, settings, now=NOW)
    assert rates.indexed_per_second == {"1m": 0.0, "5m": 0.0, "15m": 0.0}


# --- broker --------------------------------------------------------------------------------------


def test_broker_depths_count_every_priority_list_and_the_dead_letters(
    client: fakeredis.FakeRedis, settings: Settings
) -> None:
    client.rpush("q", "a", "b", "c")
    client.rpush("q\x06\x163", "d")  # a priority-3 message: kombu keeps it in its own list
    client.rpush("other-queue", "x")
    # kombu's unacked hash holds [message, exchange, routing key] for every queue of the database.
    client.hset(
        "unacked",
        mapping={
            "tag1": orjson.dumps([{"body": "b"}, "q", "q"]),
            "tag2": orjson.dumps([{"body": "b"}, "q", "q"]),
            "tag3": orjson.dumps([{"body": "b"}, "other-queue", "other-queue"]),
            "tag4": b"not kombu's",
        },
    )
    client.zadd("t:inflight", {"j\tb1": 1, "j\tb2": 2, "j\tb3": 3, "j\tb4": 4, "j\tb5": 5})
    jobs = JobStore(client, settings)
    jobs.start_job("j", ["a.txt"])
    jobs.commit_batch(
        "j", "b0", BatchOutcome(dead_letters=[dead_letter("malformed"), dead_letter("rejected")])
    )
    jobs.commit_batch("j", "b9", BatchOutcome(dead_letters=[dead_letter("malformed", 3)]))
    DeadLetterStore(client, settings).set_paused("dead letters over the high-water mark")
    status = broker_status(client, settings)
    assert status.reachable and status.error is None
    assert status.ingest_queue_depth == 4
    assert status.unacked == 2
    assert status.pending == 5
    assert status.pending_limit == settings.max_queued_batches
    assert status.dead_letters == {"malformed": 2, "rejected": 1, "exhausted": 0}  # entries
    assert status.paused_reason == "dead letters over the high-water mark"


def test_redis_unreachable_is_said_in_plain_words_without_the_password() -> None:
    settings = Settings(broker_url="redis://:hunter2-secret@127.0.0.1:1/0")
    status = broker_status(fast_redis(settings, timeout=1), settings)
    assert not status.reachable
    assert status.error is not None
    assert status.error.startswith("Redis at redis://:***@127.0.0.1:1/0 cannot be reached")
    assert "hunter2" not in status.error


# --- jobs ----------------------------------------------------------------------------------------


def _job(jobs: JobStore, job_id: str, started: datetime, records: int, batches: int) -> None:
    jobs.start_job(job_id, [f"{job_id}.txt"])
    jobs.redis.hset(jobs.job_key(job_id), "started_at", started.isoformat())
    jobs.finish_enqueue(job_id, records=records, batches=batches)


def test_running_job_progress_rate_and_eta(client: fakeredis.FakeRedis, settings: Settings) -> None:
    jobs = JobStore(client, settings)
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    _job(jobs, "run", now - timedelta(seconds=100), records=1000, batches=10)
    jobs.commit_batch(
        "run", "run:0", BatchOutcome(indexed=180, dead_letters=[dead_letter("malformed", 20)])
    )
    _job(jobs, "old", now - timedelta(hours=1), records=5, batches=1)
    jobs.commit_batch("old", "old:0", BatchOutcome(indexed=5))
    running, recent = jobs_status(client, settings, now)
    (job,) = running
    assert (job.job_id, job.state, job.records, job.done) == ("run", "running", 1000, 200)
    assert (job.indexed, job.dead_lettered, job.percent) == (180, 20, 20.0)
    assert job.elapsed_s == 100
    assert job.rate == 2.0
    assert job.eta_s == 400  # 800 records left at 2/s
    assert [j.job_id for j in recent] == ["old"]
    assert recent[0].percent == 100.0 and recent[0].eta_s is None


def test_expected_duration_is_predicted_once_at_a_tenth_and_kept(
    client: fakeredis.FakeRedis, settings: Settings
) -> None:
    jobs = JobStore(client, settings)
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    _job(jobs, "j", start, records=1000, batches=100)
    jobs.commit_batch("j", "j:0", BatchOutcome(indexed=50))
    (job,) = jobs_status(client, settings, start + timedelta(seconds=10))[0]
    assert job.expected_duration_s is None  # 5 %: too early to predict
    jobs.commit_batch("j", "j:1", BatchOutcome(indexed=int(EXPECTED_AT_FRACTION * 1000) - 50))
    (job,) = jobs_status(client, settings, start + timedelta(seconds=60))[0]
    assert job.expected_duration_s == 600  # 10 % in 60 s
    # The job stalls: its own average-rate ETA keeps moving, the prediction does not.
    (job,) = jobs_status(client, settings, start + timedelta(seconds=3000))[0]
    assert job.expected_duration_s == 600
    assert job.elapsed_s == 3000


def test_a_job_still_enqueuing_has_no_percentage_or_eta(
    client: fakeredis.FakeRedis, settings: Settings
) -> None:
    jobs = JobStore(client, settings)
    jobs.start_job("j", ["big.xml.gz"])
    jobs.commit_batch("j", "j:0", BatchOutcome(indexed=500))
    (job,) = jobs_status(client, settings, datetime.now(UTC) + timedelta(seconds=5))[0]
    assert job.state == "enqueuing"
    assert job.percent is None and job.eta_s is None and job.expected_duration_s is None


# --- workers -------------------------------------------------------------------------------------


class FakeInspect:
    def __init__(self, stats: Any, queues: Any) -> None:
        self._stats, self._queues = stats, queues

    def stats(self) -> Any:
        if isinstance(self._stats, Exception):
            raise self._stats
        return self._stats

    def active_queues(self) -> Any:
        return self._queues


class FakeApp:
    def __init__(self, stats: Any, queues: Any) -> None:
        self.asked_timeout: float | None = None
        self.control = self
        self._inspect = FakeInspect(stats, queues)

    def inspect(self, timeout: float) -> FakeInspect:
        self.asked_timeout = timeout
        return self._inspect


def test_workers_alive_with_their_concurrency_and_only_those_of_our_queue(
    settings: Settings,
) -> None:
    stats = {
        "w1@a": {
            "pool": {"max-concurrency": 4, "implementation": "celery.concurrency.prefork:TaskPool"}
        },
        "w2@b": {
            "pool": {"max-concurrency": 1, "implementation": "celery.concurrency.solo:TaskPool"}
        },
        "other@c": {"pool": {"max-concurrency": 8}},
        "silent@d": {"pool": {"max-concurrency": 2}},
    }
    queues = {
        "w1@a": [{"name": "q"}],
        "w2@b": [{"name": "q"}, {"name": "extra"}],
        "other@c": [{"name": "another-pipeline"}],
    }
    app = FakeApp(stats, queues)
    status = inspect_workers(app, settings, timeout=0.5)
    assert app.asked_timeout == 0.5
    assert status.reachable
    assert [(w.name, w.concurrency, w.pool) for w in status.alive] == [
        ("silent@d", 2, None),  # did not say what it consumes: kept
        ("w1@a", 4, "prefork"),
        ("w2@b", 1, "solo"),
    ]
    assert status.processes == 7


def test_no_worker_answering_is_an_empty_list_and_a_failed_broadcast_an_error(
    settings: Settings,
) -> None:
    assert inspect_workers(FakeApp(None, None), settings).alive == []
    failed = inspect_workers(FakeApp(ConnectionError("broker gone"), {}), settings)
    assert not failed.reachable
    assert failed.error is not None and "broker gone" in failed.error


# --- Elasticsearch -------------------------------------------------------------------------------


def test_es_health_and_document_count(settings: Settings) -> None:
    status = es_status(FakeES("yellow", 1234), settings)  # type: ignore[arg-type]
    assert (status.reachable, status.cluster_health, status.index_documents) == (
        True,
        "yellow",
        1234,
    )
    missing = es_status(FakeES("green", api_error(404, "index_not_found_exception")), settings)  # type: ignore[arg-type]
    assert missing.reachable and missing.index_documents is None and missing.error is None


def test_es_unreachable_is_said_in_plain_words() -> None:
    settings = Settings(es_url="http://127.0.0.1:1")
    status = es_status(Elasticsearch(settings.es_url), settings, timeout=2)
    assert not status.reachable
    assert status.error is not None
    assert status.error.startswith("Elasticsearch at http://127.0.0.1:1 cannot be reached")


# --- the whole snapshot --------------------------------------------------------------------------


def test_gather_reads_every_part(client: fakeredis.FakeRedis, settings: Settings) -> None:
    client.rpush("q", "a", "b")
    record_throughput(client, settings, indexed=30, done=30, now=NOW)
    status = gather_status(
        settings,
        redis_client=client,
        es_client=FakeES(),  # type: ignore[arg-type]
        workers=lambda: WorkersStatus(reachable=True),
        now=NOW,
    )
    assert status.reachable
    assert status.broker.ingest_queue_depth == 2
    assert status.throughput is not None and status.throughput.indexed_per_second["1m"] > 0
    assert status.elasticsearch.index_documents == 42
    assert status.generated_at == datetime.fromtimestamp(NOW, UTC)


def test_the_last_inbox_scan_is_reported_and_a_blocked_inbox_stands_out(
    client: fakeredis.FakeRedis, settings: Settings
) -> None:
    def status() -> Any:
        return gather_status(
            settings,
            redis_client=client,
            es_client=FakeES(),  # type: ignore[arg-type]
            workers=lambda: WorkersStatus(reachable=True),
            now=NOW,
        )

    def rendered() -> str:
        out = io.StringIO()
        Console(file=out, width=300).print(render_status(status()))
        return out.getvalue()

    assert status().inbox is None and "Inbox" not in rendered()  # no scan ever ran
    ledger = Ledger(client, settings)
    ledger.save_report(
        ScanReport(waiting_on="a.xml.gz", finished_at=datetime(2026, 12, 7, 10, tzinfo=UTC))
    )
    inbox = status().inbox
    assert inbox is not None and inbox.blocked is None and inbox.waiting_on == "a.xml.gz"
    assert inbox.finished_at == datetime(2026, 12, 7, 10, tzinfo=UTC)
    assert "waiting on a.xml.gz" in rendered() and "BLOCKED" not in rendered()

    why = "b.xml.gz is not ingested: its MD5 is 1, but b.xml.gz.md5 says 2"
    ledger.save_report(ScanReport(blocked="b.xml.gz", message=why, finished_at=None))
    inbox = status().inbox
    assert inbox is not None and (inbox.blocked, inbox.message) == ("b.xml.gz", why)
    assert f"Inbox BLOCKED (scan unfinished): {why}" in rendered()


def test_redis_down_still_reports_elasticsearch_and_does_not_ask_the_workers() -> None:
    settings = Settings(broker_url="redis://127.0.0.1:1/0")
    asked = []
    status = gather_status(
        settings,
        redis_client=fast_redis(settings, timeout=1),
        es_client=FakeES(),  # type: ignore[arg-type]
        workers=lambda: asked.append(1) or WorkersStatus(reachable=True),
        now=time.time(),
    )
    assert not status.reachable
    assert not status.broker.reachable and status.throughput is None
    assert status.elasticsearch.reachable and status.elasticsearch.index_documents == 42
    assert asked == []
    assert status.workers.error == "not asked: the broker is unreachable"


# --- rendering and the command -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pending", "limit", "shown"),
    [
        (3, 256, "pending (not yet committed; enqueue waits at 256)"),
        (256, 256, "pending (not yet committed; at the limit 256: enqueue waits)"),
        (3, 0, "pending (not yet committed)"),
    ],
)
def test_the_rendering_says_when_enqueue_waits_for_room(
    client: fakeredis.FakeRedis, pending: int, limit: int, shown: str
) -> None:
    settings = Settings(ingest_queue="q", key_prefix="t", max_queued_batches=limit)
    client.zadd("t:inflight", {f"j\tb{i}": i for i in range(pending)})
    status = gather_status(
        settings,
        redis_client=client,
        es_client=FakeES("green", 0),  # type: ignore[arg-type]
        workers=lambda: inspect_workers(FakeApp({}, {}), settings),
    )
    out = io.StringIO()
    Console(file=out, width=200).print(render_status(status))
    text = out.getvalue()
    assert shown in text
    assert f"{pending:,}" in text.split(shown, 1)[1].splitlines()[0]


def test_the_rendering_shows_every_part(client: fakeredis.FakeRedis, settings: Settings) -> None:
    jobs = JobStore(client, settings)
    now = datetime.now(UTC)
    _job(jobs, "job-xyz", now - timedelta(seconds=50), records=100, batches=4)
    jobs.commit_batch(
        "job-xyz", "b0", BatchOutcome(indexed=20, dead_letters=[dead_letter("malformed", 5)])
    )
    DeadLetterStore(client, settings).set_paused("dead-letter queues hold 5 entries")
    status = gather_status(
        settings,
        redis_client=client,
        es_client=FakeES("red", 7),  # type: ignore[arg-type]
        workers=lambda: inspect_workers(
            FakeApp({"w1@h": {"pool": {"max-concurrency": 3}}}, {}), settings
        ),
    )
    out = io.StringIO()
    Console(file=out, width=200).print(render_status(status))
    text = out.getvalue()
    for expected in (
        "ingest (q)",
        "dead letters: malformed",
        "PAUSED: dead-letter queues hold 5 entries",
        "job-xyz",
        "25/100 (25.0%)",
        "w1@h",
        "cluster red",
        "index idx: 7",
        "Throughput",
    ):
        assert expected in text, expected


def test_status_with_nothing_reachable_exits_3_in_plain_words() -> None:
    env = {
        "MEDLINE_BROKER_URL": "redis://:very-secret-pw@127.0.0.1:1/0",
        "MEDLINE_ES_URL": "http://127.0.0.1:1",
    }
    proc = run_cli("status", env=env, timeout=120)
    out = proc.stdout.decode() + proc.stderr.decode()
    assert proc.returncode == 3, out
    assert "Redis at redis://:***@127.0.0.1:1/0 cannot be reached" in out
    assert "Elasticsearch at http://127.0.0.1:1 cannot be reached" in out
    assert "Traceback" not in out
    assert "very-secret-pw" not in out
    as_json = run_cli("status", "--json", env=env, timeout=120)
    assert as_json.returncode == 3
    data = orjson.loads(as_json.stdout)
    assert data["broker"]["reachable"] is False
    assert data["elasticsearch"]["reachable"] is False
    assert "very-secret-pw" not in as_json.stdout.decode()
