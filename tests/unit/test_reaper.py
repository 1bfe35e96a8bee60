"""The reaper re-publishes batches the broker lost, and only those (fakeredis)."""

from __future__ import annotations

import base64
import time

import fakeredis
import orjson
import pytest

from schemas.messages import BatchMessage, RawRecord
from worker.jobs import BatchOutcome, JobStore
from worker.reaper import UNACKED_KEY, held_batch_ids, reap_lost_batches
from worker.settings import Settings


@pytest.fixture
def settings() -> Settings:
    return Settings(key_prefix="t", ingest_queue="q", visibility_timeout=60)


@pytest.fixture
def jobs(settings: Settings) -> JobStore:
    return JobStore(fakeredis.FakeRedis(), settings)


def batch(n: int) -> BatchMessage:
    return BatchMessage(
        job_id="j", batch_id=f"j:{n}", source="s", records=[RawRecord(offset=0, text="PMID- 1")]
    )


def hold(jobs: JobStore, message: BatchMessage, whole: bool = False) -> None:
    """Put the batch's task message in kombu's unacked hash, encoded as kombu's Redis
    transport does: its reference, or (``whole``, as older producers sent) the whole batch."""
    arg = (
        message.model_dump(mode="json") if whole else {"job_id": "j", "batch_id": message.batch_id}
    )
    body = orjson.dumps([[arg], {}, {}])
    envelope = {
        "body": base64.b64encode(body).decode(),
        "properties": {"body_encoding": "base64"},
    }
    jobs.redis.hset(UNACKED_KEY, message.batch_id, orjson.dumps([envelope, "", "q"]))


def test_only_old_uncommitted_batches_nowhere_in_the_broker_are_republished(
    jobs: JobStore, settings: Settings
) -> None:
    for n in range(4):
        jobs.track_pending(batch(n))
    jobs.commit_batch("j", "j:0", BatchOutcome(indexed=1))  # done: not pending any more
    hold(jobs, batch(1))  # a worker holds it
    sent: list[BatchMessage] = []
    later = time.time() + settings.visibility_timeout + 1

    assert reap_lost_batches(jobs.redis, jobs, settings, sent.append, now=time.time()) == []
    assert held_batch_ids(jobs.redis) == {"j:1"}
    reaped = reap_lost_batches(jobs.redis, jobs, settings, sent.append, now=later)

    assert sorted(reaped) == ["j:2", "j:3"]
    assert sorted(b.batch_id for b in sent) == ["j:2", "j:3"]
    assert sent[0].records == batch(2).records


def test_nothing_is_reaped_while_the_queue_holds_batches(
    jobs: JobStore, settings: Settings
) -> None:
    jobs.track_pending(batch(0))
    jobs.redis.rpush(settings.ingest_queue, b"a queued message")
    sent: list[BatchMessage] = []
    later = time.time() + settings.visibility_timeout + 1
    assert reap_lost_batches(jobs.redis, jobs, settings, sent.append, now=later) == []
    assert sent == []


def test_a_reaped_batch_waits_a_visibility_timeout_before_the_next_reap(
    jobs: JobStore, settings: Settings
) -> None:
    jobs.track_pending(batch(0))
    sent: list[BatchMessage] = []
    later = time.time() + settings.visibility_timeout + 1
    assert reap_lost_batches(jobs.redis, jobs, settings, sent.append, now=later) == ["j:0"]
    assert reap_lost_batches(jobs.redis, jobs, settings, sent.append, now=time.time() + 1) == []
    assert len(sent) == 1


def test_batches_held_as_whole_messages_from_older_producers_count_as_held(
    jobs: JobStore,
) -> None:
    hold(jobs, batch(5), whole=True)
    hold(jobs, batch(6))
    assert held_batch_ids(jobs.redis) == {"j:5", "j:6"}
