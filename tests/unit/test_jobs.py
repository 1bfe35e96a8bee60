"""Job accounting: exact counters under redelivery, completion, delivery counting (fakeredis)."""

from __future__ import annotations

import fakeredis
import pytest

from schemas.messages import BatchMessage, PackedBatch, RawRecord
from tests.helpers import dead_letter
from worker.jobs import BatchOutcome, JobStore
from worker.settings import Settings


@pytest.fixture
def jobs() -> JobStore:
    return JobStore(fakeredis.FakeRedis(), Settings(key_prefix="t"))


def test_a_batch_is_counted_once_however_often_it_is_committed(jobs: JobStore) -> None:
    jobs.start_job("j", ["a.txt"])
    outcome = BatchOutcome(
        indexed=8, dead_letters=[dead_letter("malformed"), dead_letter("rejected")]
    )
    assert jobs.commit_batch("j", "j:0", outcome) is True
    assert jobs.commit_batch("j", "j:0", outcome) is False
    summary = jobs.get("j")
    assert summary is not None
    assert summary.indexed == 8
    assert summary.dead_lettered_by_queue == {"malformed": 1, "rejected": 1, "exhausted": 0}
    assert jobs.redis.llen("t:dlq:malformed") == 1
    assert jobs.redis.llen("t:dlq:rejected") == 1


def test_job_completes_when_the_last_batch_commits_after_enqueue(jobs: JobStore) -> None:
    jobs.start_job("j", ["a"])
    jobs.commit_batch("j", "j:0", BatchOutcome(indexed=5))
    jobs.finish_enqueue("j", records=15, batches=2)
    assert jobs.get("j").state == "running"  # type: ignore[union-attr]
    jobs.commit_batch(
        "j", "j:1", BatchOutcome(indexed=7, dead_letters=[dead_letter("exhausted", 3)])
    )
    summary = jobs.get("j")
    assert summary is not None
    assert summary.state == "completed"
    assert summary.indexed + summary.dead_lettered == summary.records == 15
    assert summary.finished_at is not None


def test_job_completes_when_enqueue_finishes_after_every_batch(jobs: JobStore) -> None:
    jobs.start_job("j", ["a"])
    jobs.commit_batch("j", "j:0", BatchOutcome(indexed=2))
    assert jobs.get("j").state == "enqueuing"  # type: ignore[union-attr]
    jobs.finish_enqueue("j", records=2, batches=1)
    assert jobs.get("j").state == "completed"  # type: ignore[union-attr]


def test_deliveries_are_counted_per_attempt(jobs: JobStore) -> None:
    assert jobs.count_delivery("j", "j:0", retry=0) == 1
    assert jobs.count_delivery("j", "j:0", retry=0) == 2
    assert jobs.count_delivery("j", "j:0", retry=1) == 1


def test_unknown_job_is_none_and_recent_lists_newest_first(jobs: JobStore) -> None:
    assert jobs.get("nope") is None
    jobs.start_job("a", [])
    jobs.start_job("b", [])
    assert [j.job_id for j in jobs.recent()][:2] in (["b", "a"], ["a", "b"])
    assert {j.job_id for j in jobs.recent()} == {"a", "b"}


@pytest.mark.parametrize("compression", ["none", "lz4"])
def test_a_whole_batch_message_is_stored_as_the_setting_says(compression: str) -> None:
    # What replay hands over: it must be stored as enqueue would store it.
    jobs = JobStore(fakeredis.FakeRedis(), Settings(key_prefix="t", batch_compression=compression))
    message = BatchMessage(
        job_id="j",
        batch_id="j:0",
        source="dead-letter replay",
        format="medline",
        records=[
            RawRecord(offset=0, text="PMID- 1\nTI  - One\n"),
            RawRecord(offset=9, text="PMID- 2"),
        ],
    )
    jobs.track_pending(message)
    stored = jobs.redis.hget(jobs.pending_key("j"), "j:0")
    batch = PackedBatch.unpack(stored)
    assert batch.head.compression == (None if compression == "none" else "lz4")
    text = stored.split(b"\n", 1)[1]
    lz4_frame_magic = b"\x04\x22\x4d\x18"
    assert text.startswith(lz4_frame_magic) is (compression == "lz4")
    assert batch.records == message.records
