"""Helpers shared by the tests: waiting on conditions (never fixed sleeps), running the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T], *, timeout: float = 120.0, interval: float = 0.2, what: str = ""
) -> T:
    """Poll ``condition`` until it returns something truthy, and return that.

    :raises AssertionError: ``timeout`` seconds passed; the message says what was awaited and
        the last value seen.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout:.0f} s waiting for {what or condition}: {last!r}"
    )


def run_cli(
    *args: str,
    env: Mapping[str, str],
    input: bytes | None = None,
    timeout: float = 300.0,
    check: bool = False,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``medline-ingest ARGS`` in a new process with ``env`` added to the environment."""
    proc = subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env={**os.environ, **env},
        input=input,
        capture_output=True,
        timeout=timeout,
        cwd=REPO,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"medline-ingest {' '.join(args)} exited {proc.returncode}:\n"
            f"{proc.stderr.decode(errors='replace')}"
        )
    return proc
