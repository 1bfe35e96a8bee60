"""Operations against the real pipeline: worker metrics, the exporter, ``status``, JSON logs.

- a worker's /metrics counters move by exactly the records indexed and dead-lettered;
- ``status --json`` and the exporter report the queue depths, dead letters, pause and job
  progress the test set up, and say so plainly when Elasticsearch cannot be reached;
- in JSON mode every line a worker prints parses as JSON, there is one event per batch with its
  job, batch, counts and duration, a retry is a warning with its cause, and no credential from
  the settings appears (a real Redis ACL password and an Elasticsearch API key are configured).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from schemas.dead_letter import DeadLetter
from schemas.messages import RawRecord
from tests.helpers import REPO, free_port, run_cli, wait_for
from tests.integration.conftest import REDIS_HOST, REDIS_PORT, Stack, WorkerFactory
from tests.records import MALFORMED, medline_record, write_records
from worker.jobs import BatchOutcome

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

GOOD = 23
BAD = list(MALFORMED.values())  # 2 records the parser refuses
BATCH_RECORDS = 5


def scrape(port: int) -> Samples | None:
    """The samples on ``http://127.0.0.1:port/metrics``, or None while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
            text = response.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def mixed_file(tmp_path: Path, first_pmid: int) -> Path:
    records = [medline_record(first_pmid + i) for i in range(GOOD)]
    records.insert(3, BAD[0])
    records.insert(17, BAD[1])
    return write_records(tmp_path / f"mixed-{first_pmid}.txt", records)


def status_json(stack: Stack, **env: str) -> tuple[int, dict[str, Any]]:
    proc = run_cli("status", "--json", env={**stack.env, **env}, timeout=120)
    assert "Traceback" not in proc.stderr.decode(), proc.stderr.decode()
    return proc.returncode, json.loads(proc.stdout)


# --- worker metrics ------------------------------------------------------------------------------


def test_worker_metrics_move_by_exactly_the_records_indexed_and_dead_lettered(
    stack: Stack, workers: WorkerFactory, tmp_path: Path
) -> None:
    port = free_port()
    worker = workers.start(
        concurrency=2,
        MEDLINE_WORKER_METRICS_PORT=str(port),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"),
    )
    before = wait_for(lambda: scrape(port), timeout=60, what="the worker's /metrics")
    assert total(before, "medline_records_indexed_total") == 0

    path = mixed_file(tmp_path, 31_000_000)
    proc = run_cli(
        "enqueue", str(path), "--wait", "--batch-records", str(BATCH_RECORDS), env=stack.env
    )
    assert proc.returncode == 0, proc.stderr.decode()
    summary = json.loads(proc.stdout)
    assert (summary["indexed"], summary["dead_lettered"]) == (GOOD, len(BAD))
    batches = -(-(GOOD + len(BAD)) // BATCH_RECORDS)

    # The job completes at the commit; the counters move just after it, in the same task.
    def settled() -> Samples | None:
        now = scrape(port)
        done = now and total(now, "medline_batches_processed_total") - total(
            before, "medline_batches_processed_total"
        )
        return now if done and done >= batches else None

    after = wait_for(settled, timeout=60, what="every batch counted")

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("medline_records_indexed_total") == GOOD
    assert moved("medline_records_parsed_total") == GOOD
    assert moved("medline_records_dead_lettered_total") == len(BAD)
    assert moved("medline_records_dead_lettered_total", queue="malformed") == len(BAD)
    assert moved("medline_batches_processed_total", outcome="committed") == batches
    assert moved("medline_batches_processed_total", outcome="duplicate") == 0
    assert moved("medline_batches_retried_total") == 0
    assert moved("medline_batch_duration_seconds_count") == batches
    assert moved("medline_bulk_request_duration_seconds_count") >= batches - 1
    assert moved("medline_bulk_request_bytes_total") > 0
    assert total(after, "medline_batches_in_progress") == 0
    reasons = {
        dict(ls)["reason"]
        for (n, ls), v in after.items()
        if n.startswith("medline_records_dead_lettered") and v
    }
    assert reasons <= {"invalid_fields", "not_parseable"}
    assert stack.count() == GOOD

    # status: the worker alive with its concurrency, the throughput those records make.
    code, status = status_json(stack)
    assert code == 0
    ours = [w for w in status["workers"]["alive"] if w["name"].startswith(f"w0-{stack.name}@")]
    assert [(w["concurrency"], w["pool"]) for w in ours] == [(2, "prefork")]
    rates = status["throughput"]
    assert rates["indexed_per_second"]["15m"] * 900 == pytest.approx(GOOD)
    assert rates["done_per_second"]["15m"] * 900 == pytest.approx(GOOD + len(BAD))
    assert rates["indexed_per_second"]["1m"] > 0
    (job,) = [j for j in status["recent_jobs"] if j["job_id"] == summary["job_id"]]
    assert (job["state"], job["done"], job["percent"]) == ("completed", GOOD + len(BAD), 100.0)
    assert status["elasticsearch"]["index_documents"] == GOOD
    worker.terminate()


# --- status and the exporter ---------------------------------------------------------------------


@pytest.fixture
def exporter(stack: Stack, tmp_path: Path) -> Iterator[int]:
    """A running ``medline-ingest exporter`` for the stack; yields its port."""
    port = free_port()
    log = (tmp_path / "exporter.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "exporter", "--port", str(port)],
        env={**os.environ, **stack.env},
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    log.close()
    try:
        wait_for(lambda: scrape(port), timeout=60, what="the exporter's /metrics")
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, (tmp_path / "exporter.log").read_text()


def test_status_and_the_exporter_report_what_the_test_set_up(
    stack: Stack, tmp_path: Path, exporter: int
) -> None:
    # 12 records in 3 batches, waiting in the queue: no worker runs.
    path = write_records(
        tmp_path / "twelve.txt", [medline_record(32_000_000 + i) for i in range(12)]
    )
    proc = run_cli("enqueue", str(path), "--batch-records", "4", env=stack.env)
    assert proc.returncode == 0, proc.stderr.decode()
    job_id = proc.stdout.decode().split()[-1]
    # As a worker would: the first batch committed, 3 indexed and 1 dead-lettered.
    bad = DeadLetter(
        queue="malformed",
        reason="field 'title' is required",
        job_id=job_id,
        batch_id=f"{job_id}:000000",
        source=str(path),
        records=[RawRecord(offset=0, text="PMID- 1")],
    )
    assert stack.jobs.commit_batch(
        job_id, f"{job_id}:000000", BatchOutcome(indexed=3, dead_letters=[bad])
    )
    stack.dead_letters.set_paused("held by the test")

    code, status = status_json(stack)
    assert code == 0
    broker = status["broker"]
    assert broker["reachable"] and broker["ingest_queue"] == stack.name
    assert broker["ingest_queue_depth"] == 3
    assert broker["pending"] == 2
    assert broker["dead_letters"] == {"malformed": 1, "rejected": 0, "exhausted": 0}
    assert broker["paused_reason"] == "held by the test"
    (job,) = status["running_jobs"]
    assert job["job_id"] == job_id
    assert (job["state"], job["records"], job["done"]) == ("running", 12, 4)
    assert (job["indexed"], job["dead_lettered"], job["percent"]) == (3, 1, 33.3)
    assert job["eta_s"] is not None and job["eta_s"] > 0
    assert job["expected_duration_s"] is not None  # a third done: the prediction is made
    assert [w for w in status["workers"]["alive"] if stack.name in w["name"]] == []
    es = status["elasticsearch"]
    assert es["reachable"] and es["cluster_health"] in ("green", "yellow")
    assert es["index"] == stack.name and es["index_documents"] == 0

    text = run_cli("status", env=stack.env, timeout=120)
    assert text.returncode == 0
    out = text.stdout.decode()
    for expected in (job_id, "PAUSED: held by the test", "4/12 (33.3%)", f"ingest ({stack.name})"):
        assert expected in out, out

    samples = wait_for(lambda: scrape(exporter), timeout=60, what="a scrape")
    assert total(samples, "medline_redis_up") == 1
    assert total(samples, "medline_ingest_queue_depth") == 3
    assert total(samples, "medline_batches_pending") == 2
    limit = stack.settings.max_queued_batches  # the default: the stack does not set it
    assert total(samples, "medline_batches_pending_limit") == limit
    assert total(samples, "medline_dead_letter_queue_depth", queue="malformed") == 1
    assert total(samples, "medline_dead_letter_queue_depth", queue="rejected") == 0
    assert total(samples, "medline_ingest_paused") == 1
    assert total(samples, "medline_jobs_running") == 1
    assert total(samples, "medline_job_records", job_id=job_id) == 12
    assert total(samples, "medline_job_records_done", job_id=job_id) == 4
    assert total(samples, "medline_job_expected_duration_seconds", job_id=job_id) > 0
    assert total(samples, "medline_workers_alive") >= 0
    assert total(samples, "medline_elasticsearch_up") == 1
    assert total(samples, "medline_elasticsearch_cluster_health_status") in (0, 1)
    assert total(samples, "medline_index_documents") == 0

    # The queue drains (as workers would take it): the gauge follows at the next scrape.
    stack.redis.delete(stack.settings.ingest_queue)
    assert (
        total(wait_for(lambda: scrape(exporter), what="a scrape"), "medline_ingest_queue_depth")
        == 0
    )


def test_status_says_plainly_that_elasticsearch_cannot_be_reached(stack: Stack) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    code, status = status_json(stack, MEDLINE_ES_URL=closed)
    assert code == 3
    assert status["broker"]["reachable"] is True  # what could be read is still reported
    assert status["elasticsearch"]["reachable"] is False
    assert status["elasticsearch"]["error"].startswith(
        f"Elasticsearch at {closed} cannot be reached"
    )
    text = run_cli("status", env={**stack.env, "MEDLINE_ES_URL": closed}, timeout=120)
    assert text.returncode == 3
    assert f"Elasticsearch: Elasticsearch at {closed} cannot be reached" in text.stdout.decode()
    assert "Traceback" not in text.stdout.decode() + text.stderr.decode()


# --- JSON logs -----------------------------------------------------------------------------------


@pytest.fixture
def secret_env(stack: Stack) -> Iterator[dict[str, str]]:
    """Settings with real credentials: a Redis ACL user with a password (created for the test,
    removed after), and an Elasticsearch API key (the local node, without security, ignores it;
    the client sends it on every request)."""
    user = f"{stack.name}-user"
    password = f"redis-pw-{uuid.uuid4().hex}"
    try:
        stack.redis.acl_setuser(
            user,
            enabled=True,
            passwords=[f"+{password}"],
            keys=["*"],
            channels=["*"],
            commands=["+@all"],
        )
    except Exception as exc:  # Redis < 6 has no ACL
        pytest.skip(f"cannot create a Redis ACL user: {exc}")
    db = stack.settings.broker_url.rsplit("/", 1)[1]
    try:
        yield {
            "MEDLINE_BROKER_URL": f"redis://{user}@{REDIS_HOST}:{REDIS_PORT}/{db}",
            "MEDLINE_REDIS_PASSWORD": password,
            "MEDLINE_ES_API_KEY": f"es-api-key-{uuid.uuid4().hex}",
            "MEDLINE_ES_ALLOW_INSECURE_CREDENTIALS": "true",
            "MEDLINE_LOG_FORMAT": "json",
        }
    finally:
        stack.redis.acl_deluser(user)


def secrets_of(env: dict[str, str]) -> list[str]:
    return [env["MEDLINE_REDIS_PASSWORD"], env["MEDLINE_ES_API_KEY"]]


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line as JSON; fails on the first line that is not."""
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"line {number} is not JSON: {line!r}")
    return entries


def test_json_logs_one_event_per_batch_and_no_credential(
    stack: Stack, workers: WorkerFactory, tmp_path: Path, secret_env: dict[str, str]
) -> None:
    env = {**stack.env, **secret_env}
    worker = workers.start(concurrency=2, MEDLINE_WORKER_METRICS_PORT="0", **secret_env)
    path = mixed_file(tmp_path, 33_000_000)
    proc = run_cli("enqueue", str(path), "--wait", "--batch-records", str(BATCH_RECORDS), env=env)
    assert proc.returncode == 0, proc.stderr.decode()
    summary = json.loads(proc.stdout)
    assert (summary["indexed"], summary["dead_lettered"]) == (GOOD, len(BAD))
    batches = -(-(GOOD + len(BAD)) // BATCH_RECORDS)

    def batch_events() -> list[dict[str, Any]]:
        events = [e for e in json_lines(worker.log()) if e.get("event") == "batch_done"]
        return events if len(events) >= batches else []

    events = wait_for(batch_events, timeout=60, what="one batch_done event per batch")
    assert worker.terminate() == 0
    log = worker.log()
    entries = json_lines(log)  # every line, the start-up and the shutdown included

    assert len(events) == batches
    assert {e["batch_id"] for e in events} == {
        f"{summary['job_id']}:{n:06d}" for n in range(batches)
    }
    for event in events:
        assert event["job_id"] == summary["job_id"]
        assert event["level"] == "info"
        assert isinstance(event["duration_s"], float)
        for field in ("records", "indexed", "dead_lettered"):
            assert isinstance(event[field], int)
    assert sum(e["indexed"] for e in events) == GOOD
    assert sum(e["dead_lettered"] for e in events) == len(BAD)
    assert sum(e["records"] for e in events) == GOOD + len(BAD)
    (start,) = [e for e in entries if e.get("event") == "worker_starting"]
    assert start["concurrency"] == 2 and start["queues"] == [stack.name]
    assert start["transport"].startswith(f"redis://{stack.name}-user:***@")
    assert any("Warm shutdown" in e["message"] for e in entries)

    everything = log + proc.stdout.decode() + proc.stderr.decode()
    for secret in secrets_of(secret_env):
        assert secret not in everything
    status = run_cli("status", "--json", env=env, timeout=120)
    assert status.returncode == 0, status.stdout.decode()
    for secret in secrets_of(secret_env):
        assert secret not in status.stdout.decode() + status.stderr.decode()


def test_a_retry_is_a_warning_with_its_cause_and_no_credential(
    stack: Stack, workers: WorkerFactory, tmp_path: Path, secret_env: dict[str, str]
) -> None:
    port = free_port()
    closed = f"http://127.0.0.1:{free_port()}"  # Elasticsearch "down" for this worker only
    worker = workers.start(
        MEDLINE_ES_URL=closed,
        MEDLINE_WORKER_METRICS_PORT=str(port),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"),
        **secret_env,
    )
    path = write_records(
        tmp_path / "two.txt", [medline_record(34_000_000), medline_record(34_000_001)]
    )
    proc = run_cli("enqueue", str(path), env=stack.env)
    assert proc.returncode == 0, proc.stderr.decode()
    job_id = proc.stdout.decode().split()[-1]

    def retries() -> list[dict[str, Any]]:
        return [e for e in json_lines(worker.log()) if e.get("event") == "batch_retry"]

    warning = wait_for(retries, timeout=90, what="a batch_retry warning")[0]
    assert warning["level"] == "warning"
    assert (warning["job_id"], warning["batch_id"]) == (job_id, f"{job_id}:000000")
    assert warning["cause"] == "es_unreachable"
    closed_port = closed.rsplit(":", 1)[1]
    assert "Connection refused" in warning["error"] and closed_port in warning["error"]
    assert warning["error"] in warning["message"]
    assert warning["retry"] >= 1 and warning["delay_s"] > 0
    samples = wait_for(
        lambda: (
            (s := scrape(port))
            and total(s, "medline_batches_retried_total", cause="es_unreachable") >= 1
            and s
        ),
        timeout=60,
        what="the retry counted",
    )
    assert total(samples, "medline_records_indexed_total") == 0
    assert worker.terminate() == 0
    log = worker.log()
    json_lines(log)
    for secret in secrets_of(secret_env):
        assert secret not in log


def niceness(pid: int) -> int:
    """A process's niceness, field 19 of /proc/PID/stat (after the parenthesised name)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[16])


def pool_processes(pid: int) -> list[int]:
    return [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]


def test_a_worker_and_its_pool_run_below_elasticsearch_unless_told_otherwise(
    workers: WorkerFactory,
) -> None:
    base = os.nice(0)
    default = workers.start(concurrency=2)
    unchanged = workers.start(concurrency=2, MEDLINE_WORKER_NICE="0")
    for worker, expected in ((default, max(base, 10)), (unchanged, base)):
        pool = wait_for(
            lambda w=worker: len(found := pool_processes(w.proc.pid)) >= 2 and found,
            timeout=60,
            what="the worker's two pool processes",
        )
        assert [niceness(pid) for pid in [worker.proc.pid, *pool]] == [expected] * (len(pool) + 1)


def test_a_worker_of_one_process_keeps_two_bulk_requests_in_flight_unless_told(
    workers: WorkerFactory,
) -> None:
    # Real worker processes, started by the CLI as operators start them: the log says what
    # each writes with.
    cases = {
        "one process": (workers.start(concurrency=1), 2),
        "two processes": (workers.start(concurrency=2), 1),
        "one process, set": (workers.start(concurrency=1, MEDLINE_BULK_IN_FLIGHT="1"), 1),
    }
    said = {}
    for name, (worker, _) in cases.items():
        line = wait_for(
            lambda w=worker: next(
                (x for x in w.log().splitlines() if "in flight per batch" in x), None
            ),
            timeout=60,
            what=f"the bulk limits in the log of the worker with {name}",
        )
        said[name] = int(line.split(" in flight per batch")[0].rsplit(" ", 1)[1])
    assert said == {name: expected for name, (_, expected) in cases.items()}
