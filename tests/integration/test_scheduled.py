"""Scheduled ingestion end to end: an inbox, real workers, real beat processes, the real services.

Baseline then updates apply in name order with deletions and revisions; a second scan ingests
nothing; a changed file is ingested again (and the files after it re-applied); a truncated
download is refused by its published MD5 and holds back the files after it; two beats and
several ``run-now`` racing ingest each file once.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.job import JobSummary
from schemas.ledger import LedgerEntry
from tests.helpers import REPO, run_cli, wait_for
from tests.integration.conftest import Stack, WorkerFactory
from tests.pubmed_records import article_set, pubmed_article, write_xml
from tests.records import medline_record, write_records
from worker.inbox import INBOX_JOB_PREFIX, Ledger

#: Seconds the whole inbox may take in these tests before they fail.
INBOX_TIMEOUT = 300


@pytest.fixture
def inbox(stack: Stack, tmp_path: Path) -> Path:
    """An inbox directory, named in the stack's settings (for the CLI, workers and beats)."""
    path = tmp_path / "inbox"
    path.mkdir()
    stack.env["MEDLINE_INBOX_DIR"] = str(path)
    stack.env["MEDLINE_BATCH_RECORDS"] = "3"
    return path


def run_now(stack: Stack, *args: str) -> list[dict]:
    proc = run_cli(
        "schedule",
        "run-now",
        "--json",
        *args,
        env=stack.env,
        check=True,
        timeout=INBOX_TIMEOUT + 60,
    )
    return json.loads(proc.stdout)


def run_now_until_done(stack: Stack) -> list[dict]:
    return run_now(stack, "--wait", "--timeout", str(INBOX_TIMEOUT))


def ledger(stack: Stack) -> dict[str, LedgerEntry]:
    """The ledger by name (path relative to the inbox)."""
    return {e.name: e for e in Ledger(stack.redis, stack.settings).all().values()}


def inbox_jobs(stack: Stack) -> list[JobSummary]:
    return [j for j in stack.jobs.recent(limit=1000) if j.job_id.startswith(INBOX_JOB_PREFIX)]


def titles(stack: Stack) -> dict[str, str]:
    stack.refresh()
    response = stack.es.search(index=stack.settings.index, size=1000, query={"match_all": {}})
    return {hit["_id"]: hit["_source"]["title"] for hit in response["hits"]["hits"]}


def test_baseline_then_updates_apply_in_order_and_a_second_scan_ingests_nothing(
    stack: Stack, workers: WorkerFactory, inbox: Path
) -> None:
    write_xml(
        inbox / "baseline" / "pubmed25n0001.xml.gz",
        article_set([pubmed_article(p) for p in range(701, 721)]),
    )
    write_xml(
        inbox / "updatefiles" / "pubmed25n1275.xml",
        article_set([pubmed_article(702, "Revised 702.", revised="20240101")], deletes=[703]),
    )
    write_records(inbox / "updatefiles" / "pubmed25n1276.txt", [medline_record(730)])
    (inbox / "README.md").write_text("not an input")
    workers.start(concurrency=2)

    run_now_until_done(stack)

    expected = {str(p) for p in range(701, 721) if p != 703} | {"730"}
    docs = titles(stack)
    assert set(docs) == expected
    assert docs["702"] == "Revised 702."
    files = ledger(stack)
    names = ["baseline/pubmed25n0001.xml.gz", "updatefiles/pubmed25n1275.xml"]
    names += ["updatefiles/pubmed25n1276.txt"]
    assert sorted(files) == names
    assert all(files[n].state == "completed" and files[n].attempts == 1 for n in names)
    assert [files[n].seq for n in names] == sorted(files[n].seq for n in names)
    update = files["updatefiles/pubmed25n1275.xml"]
    assert (update.records, update.indexed, update.deleted) == (2, 1, 1)
    assert files["baseline/pubmed25n0001.xml.gz"].indexed == 20
    # Ordering: each file was enqueued only after the previous file's job had completed.
    for before, after in itertools.pairwise(names):
        previous = stack.jobs.get(files[before].job_id or "")
        assert previous is not None and previous.finished_at is not None
        assert files[after].enqueued_at is not None
        assert files[after].enqueued_at >= previous.finished_at, (before, after)

    jobs_before = len(inbox_jobs(stack))
    (again,) = run_now(stack)
    assert again["enqueued"] == [] and again["skipped"] == 3 and again["waiting_on"] is None
    assert len(inbox_jobs(stack)) == jobs_before == 3
    listing = json.loads(run_cli("files", "--json", env=stack.env, check=True).stdout)
    assert [e["name"] for e in listing] == names


def test_a_changed_file_is_ingested_again_and_later_files_reapplied(
    stack: Stack, workers: WorkerFactory, inbox: Path
) -> None:
    baseline = write_records(inbox / "a-baseline.txt", [medline_record(801), medline_record(802)])
    write_xml(inbox / "b-update.xml", article_set([], deletes=[802]))
    workers.start(concurrency=2)
    run_now_until_done(stack)
    assert set(titles(stack)) == {"801"}
    first = ledger(stack)

    write_records(
        baseline,
        [
            medline_record(801, "New content of 801.", lr="20240101"),
            medline_record(802),
            medline_record(803),
        ],
    )
    run_now_until_done(stack)

    now = ledger(stack)
    changed = now["a-baseline.txt"]
    assert changed.sha256 != first["a-baseline.txt"].sha256
    assert changed.reason == "content changed" and changed.state == "completed"
    assert changed.job_id != first["a-baseline.txt"].job_id and changed.records == 3
    # The update was applied again after the new baseline, so 802 stays deleted.
    reapplied = now["b-update.xml"]
    assert reapplied.reason == "an earlier file was applied after it"
    assert reapplied.seq > changed.seq and reapplied.deleted == 1
    docs = titles(stack)
    assert set(docs) == {"801", "803"}
    assert docs["801"] == "New content of 801."
    assert len(inbox_jobs(stack)) == 4


def test_a_truncated_download_is_refused_by_its_md5_and_holds_back_the_files_after_it(
    stack: Stack, workers: WorkerFactory, inbox: Path
) -> None:
    baseline = write_xml(
        inbox / "baseline" / "pubmed25n0001.xml.gz",
        article_set([pubmed_article(p) for p in range(901, 921)]),
    )
    whole = baseline.read_bytes()
    baseline.with_name("pubmed25n0001.xml.gz.md5").write_text(
        f"MD5(pubmed25n0001.xml.gz)= {hashlib.md5(whole).hexdigest()}\n"
    )
    baseline.write_bytes(whole[: len(whole) // 2])  # the download stopped half way
    (inbox / "updatefiles").mkdir()
    write_records(inbox / "updatefiles" / "pubmed25n1275.txt", [medline_record(930)])
    workers.start(concurrency=2)

    proc = run_cli("schedule", "run-now", "--wait", env=stack.env, timeout=INBOX_TIMEOUT)
    assert proc.returncode == 1
    message = proc.stderr.decode().strip()
    assert "baseline/pubmed25n0001.xml.gz is not ingested: its MD5 is" in message
    assert "Traceback" not in message and len(message.splitlines()) == 1, message
    # Nothing of it, and nothing after it, went anywhere.
    assert inbox_jobs(stack) == [] and ledger(stack) == {}
    # Operators see it: `status` (and the exporter, from the same snapshot) says the inbox is
    # blocked and why.
    shown = json.loads(run_cli("status", "--json", env=stack.env, check=True).stdout)["inbox"]
    assert shown["blocked"] == "baseline/pubmed25n0001.xml.gz"
    assert "its MD5 is" in shown["message"]

    baseline.write_bytes(whole)  # fetched again, whole
    run_now_until_done(stack)
    assert set(titles(stack)) == {str(p) for p in range(901, 921)} | {"930"}
    files = ledger(stack)
    assert files["baseline/pubmed25n0001.xml.gz"].state == "completed"
    assert files["updatefiles/pubmed25n1275.txt"].seq > files["baseline/pubmed25n0001.xml.gz"].seq


def test_a_new_years_baseline_that_would_replay_the_years_updates_waits_for_the_operator(
    stack: Stack, workers: WorkerFactory, inbox: Path
) -> None:
    stack.env["MEDLINE_INBOX_MAX_REPLAY"] = "1"
    for folder in ("baseline", "updatefiles"):
        (inbox / folder).mkdir()
    write_records(inbox / "baseline" / "pubmed25n0001.txt", [medline_record(p) for p in (941, 942)])
    updates = inbox / "updatefiles"
    write_records(updates / "pubmed25n1275.txt", [medline_record(941, lr="20250601")])
    write_records(updates / "pubmed25n1276.txt", [medline_record(943, lr="20250602")])
    workers.start(concurrency=2)
    run_now_until_done(stack)
    assert set(titles(stack)) == {"941", "942", "943"}

    # Next year's baseline, put in baseline/: it sorts before last year's two updates.
    new_baseline = inbox / "baseline" / "pubmed26n0001.txt"
    write_records(new_baseline, [medline_record(941, lr="20251215")])
    proc = run_cli("schedule", "run-now", "--wait", env=stack.env, timeout=INBOX_TIMEOUT)

    assert proc.returncode == 1
    message = proc.stderr.decode().strip()
    assert "baseline/pubmed26n0001.txt sorts before 2 files already applied" in message
    assert "--allow-replay" in message and len(message.splitlines()) == 1, message
    assert "baseline/pubmed26n0001.txt" not in ledger(stack)
    shown = json.loads(run_cli("status", "--json", env=stack.env, check=True).stdout)["inbox"]
    assert shown["blocked"] == "baseline/pubmed26n0001.txt"

    run_now(stack, "--allow-replay", "--wait", "--timeout", str(INBOX_TIMEOUT))

    files = ledger(stack)
    assert files["baseline/pubmed26n0001.txt"].state == "completed"
    for name in ("updatefiles/pubmed25n1275.txt", "updatefiles/pubmed25n1276.txt"):
        assert files[name].reason == "an earlier file was applied after it"
        assert files[name].seq > files["baseline/pubmed26n0001.txt"].seq
    # Last year's revision of 941, applied again, did not win over the new baseline's.
    assert files["updatefiles/pubmed25n1275.txt"].skipped_stale == 1
    stack.refresh()
    assert stack.es.get(index=stack.settings.index, id="941")["_source"]["revised"] == "2025-12-15"


class Beat:
    """A real ``medline-ingest beat`` process."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "worker.cli", "beat"],
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                start_new_session=True,
            )

    def ticks(self) -> int:
        """Scans this beat has sent so far."""
        if self.proc.poll() is not None:
            raise AssertionError(f"beat exited with {self.proc.returncode}:\n{self.log()}")
        return self.log().count("Sending due task scan-inbox")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)


@pytest.fixture
def beats(stack: Stack, inbox: Path, tmp_path: Path) -> Iterator[list[Beat]]:
    started: list[Beat] = []
    env = {**stack.env, "MEDLINE_SCHEDULE_INTERVAL": "0.3"}
    try:
        started += [Beat(env, tmp_path / f"beat-{i}.log") for i in range(2)]
        yield started
    finally:
        for beat in started:
            beat.stop()


def test_two_beats_and_racing_run_nows_ingest_each_file_once(
    stack: Stack, workers: WorkerFactory, inbox: Path, beats: list[Beat], tmp_path: Path
) -> None:
    expected: set[str] = set()
    for i in range(4):
        pmids = range(900 + 10 * i, 905 + 10 * i)
        expected |= {str(p) for p in pmids}
        if i % 2:
            write_records(inbox / f"file-{i}.txt", [medline_record(p) for p in pmids])
        else:
            write_xml(inbox / f"file-{i}.xml", article_set([pubmed_article(p) for p in pmids]))
    workers.start(concurrency=2)
    racers = [
        subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "schedule", "run-now"],
            env={**os.environ, **stack.env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=REPO,
        )
        for _ in range(3)
    ]

    def all_done() -> bool:
        files = ledger(stack)
        return len(files) == 4 and all(e.state == "completed" for e in files.values())

    wait_for(all_done, timeout=INBOX_TIMEOUT, what="every inbox file ingested")
    for racer in racers:
        _, err = racer.communicate(timeout=120)
        assert racer.returncode == 0, err.decode(errors="replace")
    # Both beats keep scanning after the inbox is done: let each send a few more scans.
    marks = [beat.ticks() for beat in beats]
    wait_for(
        lambda: all(b.ticks() >= m + 5 for b, m in zip(beats, marks, strict=True)),
        timeout=120,
        what="both beats sending more scans",
    )
    wait_for(lambda: stack.queue_depth() == 0, timeout=120, what="the scans to be taken")

    jobs = inbox_jobs(stack)
    sources = sorted(source for job in jobs for source in job.sources)
    assert sources == sorted(str(inbox / name) for name in ledger(stack)), "a file ran twice"
    assert all(e.attempts == 1 for e in ledger(stack).values())
    assert sum(job.indexed for job in jobs) == len(expected) == 20
    assert set(titles(stack)) == expected
