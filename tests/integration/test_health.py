"""The container probes (``python -m worker.health``) against a real worker process.

The probe must say healthy for a worker that runs, unhealthy for one that is frozen or absent,
and must not call a worker dead because Redis is down.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping

import pytest

from tests.helpers import REPO
from tests.integration.conftest import Stack, WorkerFactory

pytestmark = pytest.mark.integration

#: Seconds the probe waits for the worker's reply in these tests.
PROBE_TIMEOUT = "3"


def probe(kind: str, node: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.health", kind, "--node", node, "--timeout", PROBE_TIMEOUT],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def test_a_running_worker_is_ready_and_live(stack: Stack, workers: WorkerFactory) -> None:
    worker = workers.start()
    for kind in ("ready", "live"):
        result = probe(kind, worker.name, stack.env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("healthy:")


def test_a_frozen_worker_is_neither_ready_nor_live(stack: Stack, workers: WorkerFactory) -> None:
    worker = workers.start()
    os.kill(worker.proc.pid, signal.SIGSTOP)  # the main process: consumer and remote control
    try:
        for kind in ("ready", "live"):
            result = probe(kind, worker.name, stack.env)
            assert result.returncode == 1, result.stdout
            assert "did not answer" in result.stderr
    finally:
        os.kill(worker.proc.pid, signal.SIGCONT)
    assert probe("ready", worker.name, stack.env).returncode == 0


def test_no_worker_of_that_name_is_unhealthy(stack: Stack) -> None:
    result = probe("live", f"nobody-{stack.name}@%h", stack.env)
    assert result.returncode == 1
    assert "did not answer" in result.stderr


def test_redis_down_is_not_ready_but_does_not_fail_liveness(stack: Stack) -> None:
    env = {**stack.env, "MEDLINE_BROKER_URL": "redis://127.0.0.1:1/0"}  # nothing listens there
    ready = probe("ready", f"any-{stack.name}@%h", env)
    assert ready.returncode == 1
    assert "cannot be reached" in ready.stderr
    live = probe("live", f"any-{stack.name}@%h", env)
    assert live.returncode == 0, live.stderr
    assert "cannot be reached" in live.stdout
