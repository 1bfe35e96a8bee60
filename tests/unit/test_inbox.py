"""The inbox scan: order, one file at a time, the ledger, failures, the lock (fakeredis).

Batches are "processed" here by committing them straight to the job store, as a worker would;
the end-to-end behaviour with real workers is in tests/integration/test_scheduled.py.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import fakeredis
import pytest

from schemas.dead_letter import DeadLetter
from schemas.ledger import LedgerEntry, ScanReport
from schemas.messages import BatchMessage
from tests.records import medline_record, write_records
from worker.errors import ConfigurationError
from worker.inbox import (
    INBOX_JOB_PREFIX,
    MAX_ATTEMPTS,
    InboxLock,
    Ledger,
    LockLost,
    inbox_files,
    inbox_job_completed,
    pending_files,
    scan_inbox,
)
from worker.jobs import BatchOutcome, JobStore
from worker.settings import Settings


class Harness:
    """An inbox, a fake Redis, and a fake worker that commits what the scans publish."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.settings = Settings(key_prefix="t", inbox_dir=str(root), batch_records=2)
        self.redis = fakeredis.FakeRedis()
        self.jobs = JobStore(self.redis, self.settings)
        self.ledger = Ledger(self.redis, self.settings)
        self.published: list[BatchMessage] = []

    def write(self, name: str, *pmids: int, lr: str = "20200101") -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_records(path, [medline_record(p, lr=lr) for p in pmids])

    def scan(self, **kwargs: bool) -> ScanReport:
        return scan_inbox(
            self.settings,
            client=self.redis,
            jobs=self.jobs,
            publish=self.published.append,
            **kwargs,
        )

    def work(self, exhausted: bool = False) -> list[str]:
        """Commit every published batch, as workers would; returns their job ids in order."""
        done = []
        for batch in self.published:
            outcome = BatchOutcome(indexed=len(batch.records))
            if exhausted:
                outcome = BatchOutcome(
                    dead_letters=[
                        DeadLetter(
                            queue="exhausted",
                            reason="Elasticsearch down",
                            job_id=batch.job_id,
                            batch_id=batch.batch_id,
                            source=batch.source,
                            records=batch.records,
                        )
                    ]
                )
            self.jobs.commit_batch(batch.job_id, batch.batch_id, outcome)
            done.append(batch.job_id)
        self.published.clear()
        return done

    def entry(self, name: str) -> LedgerEntry:
        entry = self.ledger.get(str(self.root / name))
        assert entry is not None, f"{name} not in the ledger"
        return entry

    def enqueued(self, report: ScanReport) -> list[str]:
        return [item.name for item in report.enqueued]


@pytest.fixture
def inbox(tmp_path: Path) -> Harness:
    root = tmp_path / "inbox"
    root.mkdir()
    return Harness(root)


def test_files_go_one_at_a_time_in_name_order(inbox: Harness) -> None:
    inbox.write("updates/pubmed25n1275.txt", 3)
    inbox.write("baseline/pubmed25n0002.txt", 2)
    inbox.write("baseline/pubmed25n0001.txt", 1, 11, 111)

    first = inbox.scan()
    assert inbox.enqueued(first) == ["baseline/pubmed25n0001.txt"]
    assert first.waiting_on == "baseline/pubmed25n0001.txt"
    assert {b.source for b in inbox.published} == {str(inbox.root / "baseline/pubmed25n0001.txt")}
    assert len(inbox.published) == 2  # 3 records, 2 a batch

    # While the first file's job runs, nothing after it goes.
    again = inbox.scan()
    assert again.enqueued == [] and again.waiting_on == "baseline/pubmed25n0001.txt"

    inbox.work()
    assert inbox.enqueued(inbox.scan()) == ["baseline/pubmed25n0002.txt"]
    inbox.work()
    assert inbox.enqueued(inbox.scan()) == ["updates/pubmed25n1275.txt"]
    inbox.work()

    last = inbox.scan()
    assert last.enqueued == [] and last.waiting_on is None and last.skipped == 3
    entry = inbox.entry("baseline/pubmed25n0001.txt")
    assert entry.state == "completed"
    assert (entry.records, entry.indexed, entry.attempts) == (3, 3, 1)
    assert entry.job_id and entry.job_id.startswith(INBOX_JOB_PREFIX)
    assert inbox.entry("updates/pubmed25n1275.txt").seq > entry.seq


def test_a_job_completed_at_enqueue_lets_the_scan_go_on(inbox: Harness) -> None:
    inbox.write("a.txt", 1)
    inbox.write("b.txt", 2)
    # A publisher that is also the worker: each batch is committed as soon as it is sent.
    inbox.published = _Immediate(inbox.jobs)  # type: ignore[assignment]

    report = inbox.scan()

    assert inbox.enqueued(report) == ["a.txt", "b.txt"]
    assert report.waiting_on is None
    assert inbox.entry("b.txt").state == "completed"


class _Immediate(list):
    def __init__(self, jobs: JobStore) -> None:
        super().__init__()
        self.jobs = jobs

    def append(self, batch: BatchMessage) -> None:  # type: ignore[override]
        self.jobs.commit_batch(batch.job_id, batch.batch_id, BatchOutcome(indexed=1))


def test_a_changed_file_is_ingested_again_and_a_touched_one_is_not(inbox: Harness) -> None:
    path = inbox.write("a.txt", 1)
    inbox.scan()
    inbox.work()
    sha = inbox.entry("a.txt").sha256

    os.utime(path, ns=(0, 10**18))  # same content, new mtime
    touched = inbox.scan()
    assert touched.enqueued == [] and touched.skipped == 1
    assert inbox.entry("a.txt").mtime_ns == 10**18

    inbox.write("a.txt", 1, 2)
    changed = inbox.scan()
    assert [(i.name, i.reason) for i in changed.enqueued] == [("a.txt", "content changed")]
    assert inbox.entry("a.txt").sha256 != sha


def test_files_after_a_changed_file_are_applied_again_in_order(inbox: Harness) -> None:
    inbox.write("1-baseline.txt", 1, 2)
    inbox.write("2-update.txt", 2)
    for _ in range(2):
        inbox.scan()
        inbox.work()
    assert inbox.scan().skipped == 2

    inbox.write("1-baseline.txt", 1, 2, 3)
    assert inbox.enqueued(inbox.scan()) == ["1-baseline.txt"]
    inbox.work()
    assert pending_files(inbox.settings, inbox.redis) == [
        {"name": "2-update.txt", "status": "reapply"}
    ]
    # The update had been applied before the baseline's new content: it goes again, after it.
    again = inbox.scan()
    assert [(i.name, i.reason) for i in again.enqueued] == [
        ("2-update.txt", "an earlier file was applied after it")
    ]
    inbox.work()
    assert inbox.scan().enqueued == []


def test_a_late_file_that_sorts_first_is_applied_then_the_later_ones(inbox: Harness) -> None:
    inbox.write("b.txt", 2)
    inbox.scan()
    inbox.work()
    inbox.write("a.txt", 1)
    assert pending_files(inbox.settings, inbox.redis) == [
        {"name": "a.txt", "status": "new"},
        {"name": "b.txt", "status": "reapply"},
    ]

    assert inbox.enqueued(inbox.scan()) == ["a.txt"]
    inbox.work()
    assert inbox.enqueued(inbox.scan()) == ["b.txt"]


def test_a_new_file_that_would_replay_many_applied_files_waits_for_the_operator(
    inbox: Harness,
) -> None:
    # Last year's baseline and updates, applied; then next year's baseline put in baseline/,
    # where it sorts before every update of last year.
    inbox.settings = inbox.settings.model_copy(update={"inbox_max_replay": 2})
    inbox.write("baseline/pubmed25n0001.txt", 1)
    for n, pmid in ((1275, 2), (1276, 3), (1277, 4)):
        inbox.write(f"updatefiles/pubmed25n{n}.txt", pmid, lr="20250601")
    for _ in range(4):
        inbox.scan()
        inbox.work()
    assert inbox.scan().skipped == 4

    inbox.write("baseline/pubmed26n0001.txt", 1, lr="20251215")
    report = inbox.scan()

    assert report.enqueued == [] and report.blocked == "baseline/pubmed26n0001.txt"
    assert "sorts before 3 files already applied" in (report.message or "")
    assert "--allow-replay" in (report.message or "")
    assert inbox.published == []
    assert inbox.scan().blocked == "baseline/pubmed26n0001.txt"  # until the operator says

    assert inbox.enqueued(inbox.scan(allow_replay=True)) == ["baseline/pubmed26n0001.txt"]
    inbox.work()
    # The replay itself goes on by itself, one file after another.
    for n in (1275, 1276, 1277):
        assert inbox.enqueued(inbox.scan()) == [f"updatefiles/pubmed25n{n}.txt"]
        inbox.work()
    assert inbox.scan().enqueued == []


def test_a_late_file_replaying_no_more_than_the_limit_goes_on_its_own(inbox: Harness) -> None:
    inbox.settings = inbox.settings.model_copy(update={"inbox_max_replay": 2})
    for name in ("b.txt", "c.txt"):
        inbox.write(name, 2)
        inbox.scan()
        inbox.work()

    inbox.write("a.txt", 1)

    assert inbox.enqueued(inbox.scan()) == ["a.txt"]


def test_a_file_that_fails_is_retried_then_blocks_the_files_after_it(inbox: Harness) -> None:
    (inbox.root / "a.txt.gz").write_bytes(gzip.compress(b"PMID- 1\nTI  - x\n")[:-8] + b"junk")
    inbox.write("b.txt", 2)

    for attempt in range(1, MAX_ATTEMPTS + 1):
        report = inbox.scan()
        assert inbox.enqueued(report) == ["a.txt.gz"], attempt
        entry = inbox.entry("a.txt.gz")
        assert entry.state == "failed" and entry.attempts == attempt
        assert entry.error
        inbox.work()

    blocked = inbox.scan()
    assert blocked.blocked == "a.txt.gz" and blocked.enqueued == []
    assert "a.txt.gz failed 3 times" in (blocked.message or "")

    retried = inbox.scan(retry_failed=True)
    assert inbox.enqueued(retried) == ["a.txt.gz"]

    # Fixed: a new checksum starts afresh, and the next file follows.
    inbox.work()
    inbox.write("a.txt.gz", 1)
    assert inbox.enqueued(inbox.scan()) == ["a.txt.gz"]
    assert inbox.entry("a.txt.gz").attempts == 1
    inbox.work()
    assert inbox.enqueued(inbox.scan()) == ["b.txt"]


def test_exhausted_batches_fail_the_file_and_it_goes_again_once_quiet(inbox: Harness) -> None:
    inbox.write("a.txt", 1, 2, 3)
    inbox.write("b.txt", 4)
    inbox.scan()
    inbox.work(exhausted=True)

    retry = inbox.scan()
    assert [(i.name, i.reason) for i in retry.enqueued] == [("a.txt", "its last job failed")]
    entry = inbox.entry("a.txt")
    assert entry.attempts == 2 and entry.state == "enqueued"
    inbox.work()
    assert inbox.entry("a.txt").state == "enqueued"  # settled by the next scan
    assert inbox.enqueued(inbox.scan()) == ["b.txt"]
    done = inbox.entry("a.txt")
    assert done.state == "completed" and done.exhausted == 0


def test_a_failed_job_with_batches_in_flight_is_waited_for(inbox: Harness) -> None:
    inbox.write("a.txt", 1, 2, 3)
    inbox.scan()
    job_id = inbox.entry("a.txt").job_id
    assert job_id
    inbox.jobs.fail_job(job_id, "producer stopped: test")

    waiting = inbox.scan()
    assert waiting.enqueued == [] and waiting.waiting_on == "a.txt"
    assert inbox.entry("a.txt").state == "failed"

    inbox.work()  # its batches finish
    assert inbox.enqueued(inbox.scan()) == ["a.txt"]


def test_a_scan_that_died_mid_file_is_resumed(inbox: Harness) -> None:
    inbox.write("a.txt", 1, 2, 3)
    inbox.scan()
    entry = inbox.entry("a.txt")
    # As if the scan had died while enqueuing: ledger and job both still say "enqueuing".
    entry.state = "enqueuing"
    inbox.redis.hset(inbox.ledger.key, entry.path, entry.model_dump_json())
    inbox.redis.hset(inbox.jobs.job_key(entry.job_id or ""), "state", "enqueuing")
    inbox.work()

    report = inbox.scan()

    assert inbox.enqueued(report) == ["a.txt"]
    job = inbox.jobs.get(entry.job_id or "")
    assert job is not None and job.state == "failed" and "interrupted" in (job.error or "")


def test_a_file_with_no_record_is_done_with_a_note(inbox: Harness) -> None:
    (inbox.root / "a.txt").write_text("nothing here\n")
    inbox.write("b.txt", 2)
    report = inbox.scan()
    # Nothing to wait for: its job completed at once, and the next file goes in the same scan.
    assert inbox.enqueued(report) == ["a.txt", "b.txt"]
    entry = inbox.entry("a.txt")
    assert entry.state == "completed" and entry.records == 0
    assert "holds no MEDLINE or PubMed record" in (entry.error or "")


def test_hidden_and_unmatched_files_are_left_alone(inbox: Harness) -> None:
    inbox.write("a.txt", 1)
    inbox.write(".partial.txt", 2)
    inbox.write(".tmp/b.txt", 3)
    (inbox.root / "notes.md").write_text("x")
    assert [name for name, _ in inbox_files(inbox.settings)] == ["a.txt"]
    assert pending_files(inbox.settings, inbox.redis) == [{"name": "a.txt", "status": "new"}]
    # A published checksum is never an input, even to patterns that match everything.
    _publish_md5(inbox.root / "a.txt")
    everything = Settings(key_prefix="t", inbox_dir=str(inbox.root), inbox_patterns="*")
    assert [name for name, _ in inbox_files(everything)] == ["a.txt", "notes.md"]


def _publish_md5(path: Path, digest: str | None = None) -> None:
    """Write ``path``.md5 as NLM does: ``MD5(name)= hex``; ``digest`` defaults to the right one."""
    digest = digest or hashlib.md5(path.read_bytes()).hexdigest()
    path.with_name(path.name + ".md5").write_text(f"MD5({path.name})= {digest}\n")


def test_a_file_whose_published_md5_matches_is_ingested(inbox: Harness) -> None:
    _publish_md5(inbox.write("pubmed25n0001.txt", 1, 2))
    # md5sum's own format is read too, in upper case as well.
    second = inbox.write("pubmed25n0002.txt", 3)
    digest = hashlib.md5(second.read_bytes()).hexdigest().upper()
    (inbox.root / "pubmed25n0002.txt.md5").write_text(f"{digest}  pubmed25n0002.txt\n")
    assert inbox.enqueued(inbox.scan()) == ["pubmed25n0001.txt"]
    inbox.work()
    report = inbox.scan()
    assert inbox.enqueued(report) == ["pubmed25n0002.txt"] and report.blocked is None


def test_a_file_whose_md5_differs_is_not_ingested_and_blocks_the_files_after_it(
    inbox: Harness,
) -> None:
    first = inbox.write("pubmed25n0001.txt", 1, 2)
    _publish_md5(first, "0" * 32)
    inbox.write("pubmed25n0002.txt", 3)

    report = inbox.scan()
    assert report.enqueued == [] and inbox.published == []
    assert report.blocked == "pubmed25n0001.txt"
    assert report.message is not None and "0" * 32 in report.message
    assert hashlib.md5(first.read_bytes()).hexdigest() in report.message
    assert inbox.ledger.get(str(first)) is None  # nothing recorded: the next scan checks again
    assert inbox.scan().blocked == "pubmed25n0001.txt"

    _publish_md5(first)  # fetched again, whole
    report = inbox.scan()
    assert inbox.enqueued(report) == ["pubmed25n0001.txt"] and report.blocked is None


def test_a_md5_file_without_an_md5_blocks_its_file(inbox: Harness) -> None:
    path = inbox.write("pubmed25n0001.txt", 1)
    (inbox.root / "pubmed25n0001.txt.md5").write_text("<html>404 Not Found</html>\n")
    report = inbox.scan()
    assert report.enqueued == [] and report.blocked == "pubmed25n0001.txt"
    assert report.message is not None and "holds no MD5" in report.message
    _publish_md5(path)
    assert inbox.enqueued(inbox.scan()) == ["pubmed25n0001.txt"]


def test_with_md5_required_a_file_waits_for_its_md5(inbox: Harness) -> None:
    inbox.settings = Settings(
        key_prefix="t", inbox_dir=str(inbox.root), batch_records=2, inbox_require_md5=True
    )
    path = inbox.write("pubmed25n0001.txt", 1)
    report = inbox.scan()
    assert report.enqueued == [] and report.awaiting_md5 == "pubmed25n0001.txt"
    assert report.blocked is None and "MEDLINE_INBOX_REQUIRE_MD5" in (report.message or "")
    _publish_md5(path)
    report = inbox.scan()
    assert inbox.enqueued(report) == ["pubmed25n0001.txt"] and report.awaiting_md5 is None
    inbox.work()
    # Done is done: a .md5 moved away later does not send the file through again.
    (inbox.root / "pubmed25n0001.txt.md5").unlink()
    report = inbox.scan()
    assert report.enqueued == [] and report.skipped == 1 and report.awaiting_md5 is None
    # Content checked once is not checked again: re-applied after a late file that sorts
    # before it, it goes without its .md5.
    _publish_md5(inbox.write("pubmed25n0000.txt", 2))
    assert inbox.enqueued(inbox.scan()) == ["pubmed25n0000.txt"]
    inbox.work()
    report = inbox.scan()
    assert inbox.enqueued(report) == ["pubmed25n0001.txt"] and report.awaiting_md5 is None
    assert inbox.entry("pubmed25n0001.txt").reason == "an earlier file was applied after it"


def test_a_last_report_that_cannot_be_read_is_taken_as_none(inbox: Harness) -> None:
    inbox.write("a.txt", 1)
    report = inbox.scan()
    assert inbox.ledger.last_report() == report
    inbox.redis.set(inbox.ledger.last_scan_key, b'{"files": "many"}')  # another version's

    assert inbox.ledger.last_report() is None


def test_no_inbox_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="MEDLINE_INBOX_DIR"):
        inbox_files(Settings(key_prefix="t"))
    with pytest.raises(ConfigurationError, match="not a directory"):
        inbox_files(Settings(key_prefix="t", inbox_dir=str(tmp_path / "missing")))


def test_a_scan_does_nothing_while_another_holds_the_lock(inbox: Harness) -> None:
    inbox.write("a.txt", 1)
    other = inbox.ledger.lock()
    assert other.acquire()

    report = inbox.scan()

    assert report.busy and report.enqueued == [] and inbox.published == []
    assert inbox.ledger.get(str(inbox.root / "a.txt")) is None
    assert other.release()
    assert inbox.enqueued(inbox.scan()) == ["a.txt"]


def test_the_lock_is_released_and_renewed_only_by_its_holder(inbox: Harness) -> None:
    first = InboxLock(inbox.redis, "t:lock", ttl_ms=60_000)
    second = InboxLock(inbox.redis, "t:lock", ttl_ms=60_000)
    assert first.acquire()
    assert not second.acquire()
    assert not second.release()
    with pytest.raises(LockLost):
        second.renew()
    assert inbox.redis.get("t:lock") == first.token.encode()
    first.renew()
    assert first.release()
    assert second.acquire()


def test_a_scanner_that_lost_its_lock_records_nothing(inbox: Harness) -> None:
    inbox.write("a.txt", 1)
    lock = inbox.ledger.lock()
    assert lock.acquire()
    inbox.redis.delete(lock.key)  # expired
    entry_path = str(inbox.root / "a.txt")
    entry = LedgerEntry(
        path=entry_path, name="a.txt", size=1, mtime_ns=1, sha256="x", state="enqueued"
    )
    with pytest.raises(LockLost):
        inbox.ledger.put(entry, lock)
    assert inbox.ledger.get(entry_path) is None


def test_workers_ask_for_a_scan_only_when_an_inbox_job_completed(inbox: Harness) -> None:
    inbox.write("a.txt", 1, 2, 3)
    inbox.scan()
    job_id = inbox.entry("a.txt").job_id or ""
    assert not inbox_job_completed(inbox.jobs, job_id)
    inbox.work()
    assert inbox_job_completed(inbox.jobs, job_id)
    inbox.jobs.start_job("20250101T000000-abcdef12", ["x"])
    inbox.jobs.finish_enqueue("20250101T000000-abcdef12", 0, 0)
    assert not inbox_job_completed(inbox.jobs, "20250101T000000-abcdef12")


def test_crontab_setting_is_checked_and_used() -> None:
    from celery.schedules import crontab
    from pydantic import ValidationError

    from worker.celery_app import beat_schedule

    settings = Settings(inbox_dir="/in", schedule_crontab=" 30  2 * *  mon-fri")
    assert settings.schedule_crontab == "30 2 * * mon-fri"
    entry = beat_schedule(settings)["scan-inbox"]
    assert isinstance(entry["schedule"], crontab)
    assert entry["schedule"].hour == {2} and entry["schedule"].minute == {30}
    assert beat_schedule(Settings(inbox_dir="/in"))["scan-inbox"]["schedule"] == 300.0
    assert beat_schedule(Settings()) == {}
    for bad in ("0 2 * *", "0 25 * * *", "x * * * *"):
        with pytest.raises(ValidationError):
            Settings(schedule_crontab=bad)
