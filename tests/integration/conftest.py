"""Fixtures for integration tests: the real Redis, the real Elasticsearch, real worker processes.

Start the services first: ``deploy/local/services up``. Each test gets its own Redis database,
index alias, queue and key prefix, so tests never see each other's data.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from elasticsearch import Elasticsearch

from schemas.job import JobSummary
from tests.helpers import REPO, wait_for
from worker.dead_letters import DeadLetterStore
from worker.es_client import make_client
from worker.index_admin import delete_index
from worker.jobs import JobStore
from worker.settings import Settings

pytestmark = pytest.mark.integration

#: Where the local services listen unless the environment says otherwise.
REDIS_HOST = os.environ.get("MEDLINE_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("MEDLINE_LOCAL_REDIS_PORT", "6379"))
ES_URL = os.environ.get(
    "MEDLINE_TEST_ES_URL", f"http://127.0.0.1:{os.environ.get('MEDLINE_LOCAL_ES_PORT', '9200')}"
)
#: Redis databases the tests may use (the local Redis is configured with 64).
TEST_DATABASES = range(1, 64)
#: Seconds a worker gets to say it is ready.
WORKER_START_TIMEOUT = 120
#: Lines of each worker's log printed when a test fails (pytest shows them with the failure).
FAILED_LOG_LINES = 80
#: Whether the test's own body failed, for fixtures to report on at teardown.
CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    if report.when == "call":
        item.stash[CALL_FAILED] = report.failed
    return report


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def services() -> None:
    """Fail clearly when the local services are not running."""
    try:
        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=5).ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"Redis on {REDIS_HOST}:{REDIS_PORT} not reachable ({exc}); "
            "run deploy/local/services up"
        )
    try:
        Elasticsearch(ES_URL, request_timeout=10).cluster.health()
    except Exception as exc:
        pytest.fail(
            f"Elasticsearch at {ES_URL} not reachable ({exc}); run deploy/local/services up"
        )


@dataclass
class Stack:
    """One test's view of the real services, with names of its own."""

    name: str
    env: dict[str, str]
    settings: Settings
    redis: redis.Redis
    es: Elasticsearch
    jobs: JobStore
    dead_letters: DeadLetterStore

    def refresh(self) -> None:
        self.es.indices.refresh(index=self.settings.index)

    def count(self) -> int:
        """Documents in the test's index (after a refresh)."""
        self.refresh()
        return int(self.es.count(index=self.settings.index)["count"])

    def pmids(self) -> list[str]:
        """Every document id in the test's index, sorted (after a refresh)."""
        self.refresh()
        response = self.es.search(
            index=self.settings.index, size=10_000, source=False, query={"match_all": {}}
        )
        return sorted(hit["_id"] for hit in response["hits"]["hits"])

    def queue_depth(self) -> int:
        return int(self.redis.llen(self.settings.ingest_queue))

    def job(self, job_id: str) -> JobSummary:
        """The job's counters now; fails the test if there is no such job."""
        summary = self.jobs.get(job_id)
        assert summary is not None, f"no job {job_id}"
        return summary

    def wait_completed(self, job_id: str, timeout: float, what: str) -> JobSummary:
        """Wait until the job's state is ``completed`` and return its counters."""
        return wait_for(
            lambda: (s := self.job(job_id)).state == "completed" and s, timeout=timeout, what=what
        )


def stack_env(name: str, db: int, **overrides: str) -> dict[str, str]:
    """Settings for an isolated test: own database, index, queue, prefix; short timeouts."""
    env = {
        "MEDLINE_BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}",
        "MEDLINE_ES_URL": ES_URL,
        "MEDLINE_INDEX": name,
        "MEDLINE_INGEST_QUEUE": name,
        "MEDLINE_KEY_PREFIX": name,
        "MEDLINE_VISIBILITY_TIMEOUT": "15",
        "MEDLINE_BATCH_BACKOFF_INITIAL": "0.5",
        "MEDLINE_BATCH_BACKOFF_MAX": "2",
        "MEDLINE_ITEM_BACKOFF_INITIAL": "0.1",
        "MEDLINE_ITEM_BACKOFF_MAX": "1",
        "MEDLINE_LOG_LEVEL": "INFO",
        # Tests run several workers on one host; those that read worker metrics set a port.
        "MEDLINE_WORKER_METRICS_PORT": "0",
    }
    env.update(overrides)
    return env


@pytest.fixture
def stack(services: None) -> Iterator[Stack]:
    """An isolated slice of the real services for one test, cleaned up afterwards."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    db = random.choice(TEST_DATABASES)
    env = stack_env(name, db)
    settings = Settings(**{k.removeprefix("MEDLINE_").lower(): v for k, v in env.items()})
    client = redis.Redis.from_url(env["MEDLINE_BROKER_URL"])
    es = make_client(settings)
    stack = Stack(
        name=name,
        env=env,
        settings=settings,
        redis=client,
        es=es,
        jobs=JobStore(client, settings),
        dead_letters=DeadLetterStore(client, settings),
    )
    yield stack
    for key in client.scan_iter(match=f"{name}*"):
        client.delete(key)
    delete_index(es, name)


@dataclass
class WorkerProcess:
    """A real ``medline-ingest worker`` process (and its pool children)."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    name: str

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = FAILED_LOG_LINES) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def assert_alive(self) -> None:
        """Fail the test now, with the end of its log, if the worker has exited."""
        if self.proc.poll() is not None:
            raise AssertionError(
                f"worker {self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
            )

    def is_ready(self) -> bool:
        self.assert_alive()
        return " ready." in self.log()

    def kill(self) -> None:
        """SIGKILL the worker and its children at once, as a crash or OOM kill would."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def terminate(self, timeout: float = 120) -> int:
        """SIGTERM (warm shutdown) and wait for the exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=timeout)
        return self.proc.returncode


@dataclass
class WorkerFactory:
    stack: Stack
    tmp_path: Path
    started: list[WorkerProcess] = field(default_factory=list)

    def start(self, concurrency: int = 1, wait: bool = True, **env: str) -> WorkerProcess:
        """Start a worker with the stack's settings plus ``env`` overrides."""
        index = len(self.started)
        name = f"w{index}-{self.stack.name}@%h"
        log_path = self.tmp_path / f"worker-{index}.log"
        log_file = log_path.open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "worker", "-c", str(concurrency), "-n", name],
            env={**os.environ, **self.stack.env, **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,  # its own process group, so kill() reaches the children
        )
        log_file.close()
        worker = WorkerProcess(proc, log_path, name)
        self.started.append(worker)
        if wait:
            wait_for(worker.is_ready, timeout=WORKER_START_TIMEOUT, what="worker ready")
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            if worker.proc.poll() is None:
                try:
                    worker.terminate(timeout=30)
                except subprocess.TimeoutExpired:
                    worker.kill()


@pytest.fixture
def workers(
    stack: Stack, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[WorkerFactory]:
    """Starts real worker processes for the test; stops them all afterwards, and prints the
    end of their logs if the test failed."""
    factory = WorkerFactory(stack, tmp_path)
    yield factory
    if request.node.stash.get(CALL_FAILED, False):
        for worker in factory.started:
            print(f"--- last lines of {worker.log_path} ---\n{worker.log_tail()}")
    factory.stop_all()
