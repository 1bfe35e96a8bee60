"""Outages of the real services in the middle of a job: nothing lost, nothing dead-lettered.

These tests stop and start the local Elasticsearch and Redis through deploy/local/services,
so they must not run beside other test sessions on the same services.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import redis

from tests.helpers import REPO, run_cli, wait_for
from tests.integration.conftest import REDIS_HOST, REDIS_PORT, Stack, WorkerFactory
from tests.records import medline_record, write_records

SERVICES = REPO / "deploy" / "local" / "services"
#: How long Elasticsearch stays down: "started again a minute later".
ES_OUTAGE_SECONDS = 60
JOB_TIMEOUT = 600


def services(*args: str) -> None:
    subprocess.run([str(SERVICES), *args], check=True, timeout=600, capture_output=True)


def test_elasticsearch_down_for_a_minute_is_waited_out(
    stack: Stack, workers: WorkerFactory, tmp_path: Path
) -> None:
    total = 4000
    path = write_records(
        tmp_path / "outage.txt", (medline_record(400_000 + i) for i in range(total))
    )
    worker = workers.start(concurrency=2)
    job_id = (
        run_cli("enqueue", str(path), "--batch-records", "50", env=stack.env, check=True)
        .stdout.decode()
        .strip()
    )
    wait_for(
        lambda: stack.job(job_id).indexed > 0,
        timeout=JOB_TIMEOUT,
        interval=0.05,
        what="indexing to start",
    )

    services("down", "elasticsearch")
    try:
        down_at = time.monotonic()
        assert stack.job(job_id).state != "completed", "job finished before the outage"
        # The outage lasts a minute, and the workers must have hit it and scheduled retries.
        wait_for(
            lambda: time.monotonic() - down_at >= ES_OUTAGE_SECONDS and "retry" in worker.log(),
            timeout=ES_OUTAGE_SECONDS + 120,
            what="a minute of outage with retries",
        )
        during = stack.job(job_id)
        assert during.state != "completed"
        assert during.dead_lettered == 0
    finally:
        services("up", "elasticsearch")

    done = stack.wait_completed(
        job_id, timeout=JOB_TIMEOUT, what="the job to complete after the outage"
    )
    assert done.indexed == total
    assert done.dead_lettered == 0
    assert stack.count() == total


def test_redis_restarted_mid_job_loses_nothing(
    stack: Stack, workers: WorkerFactory, tmp_path: Path
) -> None:
    total = 20_000
    path = write_records(
        tmp_path / "redis.txt", (medline_record(500_000 + i) for i in range(total))
    )
    worker = workers.start(concurrency=2)
    # Files, not pipes: nobody reads a pipe while the test waits, and a full one would stall it.
    out_path, err_path = tmp_path / "producer.out", tmp_path / "producer.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        producer = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "enqueue", str(path), "--batch-records", "10"],
            env={**os.environ, **stack.env},
            cwd=REPO,
            stdout=out,
            stderr=err,
        )
    try:
        # Restart while the producer is still enqueuing and workers are indexing.
        wait_for(
            lambda: _started(stack),
            timeout=JOB_TIMEOUT,
            interval=0.05,
            what="the producer and workers to be busy",
        )
        services("down", "redis")
        wait_for(lambda: not _redis_answers(), timeout=60, what="Redis to be down")
        services("up", "redis")

        def producer_done() -> bool:
            # A worker that died would leave the producer waiting for room for ever.
            worker.assert_alive()
            return producer.poll() is not None

        wait_for(producer_done, timeout=JOB_TIMEOUT, what="the producer to finish")
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.wait(timeout=30)
    assert producer.returncode == 0, err_path.read_text(errors="replace")
    job_id = out_path.read_text().strip()

    done = wait_for(
        lambda: worker.assert_alive() or ((s := stack.job(job_id)).state == "completed" and s),
        timeout=JOB_TIMEOUT,
        what="the job to complete after the Redis restart",
    )
    assert done.records == total
    assert done.indexed == total
    assert done.dead_lettered == 0
    assert stack.count() == total


def _redis_answers() -> bool:
    try:
        return bool(redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=2).ping())
    except redis.RedisError:
        return False


def _started(stack: Stack) -> bool:
    """A job exists that has some records indexed while its producer is still enqueuing."""
    for summary in stack.jobs.recent(1):
        if summary.state == "enqueuing" and summary.indexed > 0:
            return True
    return False
