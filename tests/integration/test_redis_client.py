"""The program's Redis client against a real redis-server that stops and starts again.

Each test runs its own redis-server on a free port, without persistence, so that stopping it
disturbs nobody else (the shared local Redis keeps serving the other tests).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from tests.helpers import free_port, wait_for
from worker.redis_client import make_redis
from worker.settings import Settings
from worker.status import fast_redis

#: Seconds a private redis-server gets to answer after it starts.
SERVER_START_TIMEOUT = 60


class PrivateRedis:
    """A redis-server of the test's own, on one port, that can be stopped and started again."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed; run deploy/local/services up")
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self.answers, timeout=SERVER_START_TIMEOUT, interval=0.05, what="redis-server")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def answers(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=2).ping())
        except redis.RedisError:
            return False


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_command_after_redis_went_away_waits_for_it_to_come_back(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    # The client's pooled connection is open when the server dies: the next command finds its
    # socket closed and must reconnect. redis-py retries a broken command, but not that
    # reconnection, which used to fail at once with "Connection refused" (CI, 2026-12-06).
    client = make_redis(Settings(broker_url=f"redis://127.0.0.1:{private_redis.port}/0"))
    client.set("kept", "yes")
    private_redis.stop()
    caplog.set_level(logging.WARNING, logger="worker.redis_client")
    with ThreadPoolExecutor(1) as pool:
        command = pool.submit(client.set, "written", "after the restart")
        wait_for(
            lambda: command.done() or "cannot be reached" in caplog.text,
            timeout=60,
            interval=0.05,
            what="the client to report that Redis is away",
        )
        assert not command.done(), f"the command ended while Redis was down: {command.exception()}"
        private_redis.start()
        assert command.result(timeout=120) is True
    assert client.get("written") == b"after the restart"
    assert f"127.0.0.1:{private_redis.port}" in caplog.text


def test_a_redis_that_never_answered_is_reported_at_once(tmp_path: Path) -> None:
    # A wrong URL must not keep a command waiting for minutes: only a server that answered
    # once is waited for.
    client = make_redis(Settings(broker_url=f"redis://127.0.0.1:{free_port()}/0"))
    with pytest.raises(redis.ConnectionError, match="Connection refused"):
        client.ping()


def test_a_status_probe_does_not_wait_for_redis_to_come_back(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    # fast_redis is what `status` and the metrics exporter read with: a scrape must say
    # "down" now, not after minutes, and must not log a retry it does not make.
    client = fast_redis(Settings(broker_url=f"redis://127.0.0.1:{private_redis.port}/0"))
    assert client.ping() is True
    private_redis.stop()
    caplog.set_level(logging.WARNING, logger="worker.redis_client")
    with pytest.raises(redis.ConnectionError, match="Connection refused"):
        client.ping()
    assert "cannot be reached" not in caplog.text
