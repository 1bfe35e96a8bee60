"""What a task message stands for: the broker carries a reference, the batch is read from the
job's pending hash (fakeredis)."""

from __future__ import annotations

import fakeredis
import pytest
from pydantic import ValidationError

from schemas.messages import BatchMessage, BatchRef, RawRecord
from worker.jobs import BatchOutcome, JobStore
from worker.pipeline import MissingBatchError, load_batch
from worker.settings import Settings


@pytest.fixture
def jobs() -> JobStore:
    return JobStore(fakeredis.FakeRedis(), Settings(key_prefix="t"))


BATCH = BatchMessage(
    job_id="j",
    batch_id="j:000001",
    source="a.txt",
    records=[RawRecord(offset=0, text="PMID- 1\nTI  - x"), RawRecord(offset=17, text="PMID- 2")],
)
REF = BatchRef(job_id="j", batch_id="j:000001").model_dump()


def test_a_reference_is_read_from_the_pending_hash(jobs: JobStore) -> None:
    jobs.track_pending(BATCH)
    loaded = load_batch(jobs, REF)
    assert loaded is not None
    assert loaded.to_message() == BATCH


def test_a_batch_stored_as_json_by_an_older_producer_is_still_read(jobs: JobStore) -> None:
    jobs.redis.hset(jobs.pending_key("j"), "j:000001", BATCH.to_json())
    loaded = load_batch(jobs, REF)
    assert loaded is not None
    assert loaded.to_message() == BATCH


def test_a_damaged_stored_batch_is_not_a_batch() -> None:
    # Stored as text, so that cutting it leaves a valid head over too few bytes (a damaged
    # LZ4 frame is refused as such: tests/unit/test_messages.py).
    jobs = JobStore(fakeredis.FakeRedis(), Settings(key_prefix="t", batch_compression="none"))
    jobs.track_pending(BATCH)
    stored = jobs.redis.hget(jobs.pending_key("j"), "j:000001")
    jobs.redis.hset(jobs.pending_key("j"), "j:000001", stored[:-3])
    with pytest.raises(ValidationError, match="sizes add up to 22 bytes but 19 follow"):
        load_batch(jobs, REF)


def test_a_reference_to_a_committed_batch_is_a_redelivery(jobs: JobStore) -> None:
    jobs.track_pending(BATCH)
    jobs.commit_batch("j", "j:000001", BatchOutcome(indexed=2))
    assert load_batch(jobs, REF) is None


def test_a_reference_to_a_batch_that_is_nowhere_is_an_error_that_names_it(jobs: JobStore) -> None:
    with pytest.raises(MissingBatchError, match="j:000001 of job j"):
        load_batch(jobs, REF)


def test_a_whole_batch_from_an_older_producer_is_still_accepted(jobs: JobStore) -> None:
    loaded = load_batch(jobs, BATCH.model_dump(mode="json"))
    assert loaded is not None
    assert loaded.to_message() == BATCH


@pytest.mark.parametrize("message", [{"job_id": "j"}, ["j", "b"], "j:1", {"records": 3}])
def test_anything_else_is_not_a_batch(jobs: JobStore, message: object) -> None:
    with pytest.raises(ValidationError):
        load_batch(jobs, message)
