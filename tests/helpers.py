"""Helpers shared by the tests: waiting on conditions (never fixed sleeps), running the CLI,
and the values several tests build (a dead letter, an Elasticsearch API error)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import elastic_transport

from schemas.dead_letter import DeadLetter
from schemas.document import Document
from schemas.messages import RawRecord

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (free when asked)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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


def python_output(
    snippet: str, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120.0
) -> str:
    """The standard output of ``snippet`` run by a fresh interpreter in the repository, with
    ``args`` as its ``sys.argv[1:]``: for what a test cannot undo in its own process (the
    collector's thresholds, malloc's, a pool of forked processes).

    :param env: the whole environment of the process; default: this one's.
    :raises AssertionError: the snippet exited non-zero (its stderr in the message).
    """
    proc = subprocess.run(
        [sys.executable, "-c", snippet, *args],
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def dead_letter(queue: str, records: int = 1) -> DeadLetter:
    """A dead letter of ``queue`` holding ``records`` one-character records."""
    return DeadLetter(
        queue=queue,  # type: ignore[arg-type]
        reason="bad",
        job_id="j",
        batch_id="b",
        source="s",
        records=[RawRecord(offset=i, text="x") for i in range(records)],
    )


def api_error(status: int, error: str = "boom") -> elastic_transport.ApiError:
    """The error the Elasticsearch client raises for an HTTP ``status`` answer."""
    meta = elastic_transport.ApiResponseMeta(
        status=status,
        http_version="1.1",
        headers=elastic_transport.HttpHeaders(),
        duration=0.0,
        node=elastic_transport.NodeConfig("http", "localhost", 9200),
    )
    return elastic_transport.ApiError(error, meta=meta, body={})


def sample_documents() -> list[Document]:
    """The documents of ``tests/data/sample.medline``, as the worker makes them."""
    # Imported here: the worker's modules read settings, which some tests set first.
    from worker.documents import record_to_document
    from worker.medline_text import iter_raw_records, open_source

    with open_source(DATA / "sample.medline") as stream:
        return [record_to_document(r.text) for r in iter_raw_records(stream)]
