"""Job accounting in Redis: exact counters that survive redelivery, and the batch commit.

A job is one call of the producer. Its hash holds the counters; each batch's outcome (indexed
count, dead letters, deletions, stale skips) is applied by :meth:`JobStore.commit_batch` in one
Lua script, guarded by a set of finished batch ids, so a batch that is delivered twice (a worker
killed after indexing, before acknowledging) is counted once and its dead letters are pushed once.

Keys, under ``settings.key_prefix`` (default ``medline``):

- ``{p}:job:{job_id}``                 hash of counters and timestamps
- ``{p}:job:{job_id}:batches_done``    set of batch ids whose outcome is committed
- ``{p}:job:{job_id}:deliveries``      hash ``{batch_id}:{retry}`` → deliveries
- ``{p}:job:{job_id}:pending``         hash ``batch_id`` → the packed batch, until committed
- ``{p}:inflight``                     sorted set ``{job_id}\t{batch_id}`` by last publish time
- ``{p}:jobs``                         sorted set of job ids by start time
- ``{p}:dlq:{queue}``                  dead-letter lists (see :mod:`worker.dead_letters`)

The pending hash holds the only copy of each batch's records: the broker carries just a
:class:`~schemas.messages.BatchRef`, and the worker reads the batch from here
(:meth:`JobStore.pending_batch`), so the raw text crosses Redis once each way instead of being
base64- and JSON-encoded into a broker message, copied to kombu's unacked hash and decoded again.
It is stored packed (:class:`~schemas.messages.PackedBatch`): the records' text as it was read,
after a JSON head.
It is also the safety net under the broker: kombu's Redis transport pops a message before it
records it as unacknowledged, so a worker killed in between loses it, and
:mod:`worker.reaper` re-publishes batches that are pending but nowhere in the broker.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import uuid4

import orjson
import redis

from schemas.dead_letter import DEAD_LETTER_QUEUES, DeadLetter
from schemas.job import JobSummary
from schemas.messages import BatchMessage, PackedBatch
from worker.settings import Settings

#: Seconds a job's delivery counters are kept; they only matter while the job runs.
DELIVERIES_TTL = 14 * 24 * 3600

_COMMIT_BATCH = """
-- KEYS: job hash, done set, one dead-letter list per queue (malformed, rejected, exhausted),
--       pending hash, inflight zset
-- ARGV: batch_id, indexed, deleted, skipped_stale, now, n_dead, then n_dead triples
--       (queue index 1..3, records in the entry, entry json); last: the inflight member
redis.call('HDEL', KEYS[6], ARGV[1])
redis.call('ZREM', KEYS[7], ARGV[#ARGV])
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'indexed', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'deleted', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'skipped_stale', ARGV[4])
local n = tonumber(ARGV[6])
local names = {'malformed', 'rejected', 'exhausted'}
for i = 0, n - 1 do
  local q = tonumber(ARGV[7 + 3 * i])
  redis.call('RPUSH', KEYS[2 + q], ARGV[9 + 3 * i])
  redis.call('HINCRBY', KEYS[1], 'dl:' .. names[q], ARGV[8 + 3 * i])
end
local done = redis.call('HINCRBY', KEYS[1], 'batches_done', 1)
local total = redis.call('HGET', KEYS[1], 'batches')
if redis.call('HGET', KEYS[1], 'state') == 'running' and tonumber(total) == done then
  redis.call('HSET', KEYS[1], 'state', 'completed', 'finished_at', ARGV[5])
end
return 1
"""

_FINISH_ENQUEUE = """
-- KEYS: job hash. ARGV: records, batches, now
redis.call('HSET', KEYS[1], 'records', ARGV[1], 'batches', ARGV[2], 'enqueued_at', ARGV[3],
           'state', 'running')
local done = tonumber(redis.call('HGET', KEYS[1], 'batches_done') or '0')
if done == tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'state', 'completed', 'finished_at', ARGV[3])
end
return 1
"""


def new_job_id() -> str:
    """A job id that sorts by creation time: ``YYYYmmddTHHMMSS-<8 hex>``."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid4().hex[:8]}"


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class BatchOutcome:
    """What became of one batch's records; committed once by :meth:`JobStore.commit_batch`."""

    indexed: int = 0
    deleted: int = 0
    skipped_stale: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)

    @property
    def dead_lettered_records(self) -> int:
        return sum(len(d.records) for d in self.dead_letters)


class JobStore:
    """Jobs and their counters in Redis.

    :param client: Redis client (``decode_responses`` off).
    :param settings: for the key prefix.
    Redis errors propagate: callers decide whether to retry (tasks) or report (CLI).
    """

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.settings = settings
        self._commit = client.register_script(_COMMIT_BATCH)
        self._finish_enqueue = client.register_script(_FINISH_ENQUEUE)

    # --- keys ---
    def job_key(self, job_id: str) -> str:
        return self.settings.key("job", job_id)

    def dead_letter_key(self, queue: str) -> str:
        return self.settings.key("dlq", queue)

    def pending_key(self, job_id: str) -> str:
        return self.job_key(job_id) + ":pending"

    @property
    def inflight_key(self) -> str:
        return self.settings.key("inflight")

    @staticmethod
    def inflight_member(job_id: str, batch_id: str) -> str:
        return f"{job_id}\t{batch_id}"

    # --- producer side ---
    def queued_batches(self) -> int:
        """Batches of every job stored in Redis whose outcome is not committed yet (what
        ``status`` reports as pending)."""
        return int(self.redis.zcard(self.inflight_key))

    def start_job(self, job_id: str, sources: Iterable[str]) -> None:
        """Create the job's hash in state ``enqueuing``."""
        now = _now()
        self.redis.hset(
            self.job_key(job_id),
            mapping={
                "state": "enqueuing",
                "sources": orjson.dumps(list(sources)),
                "started_at": now,
                "records": 0,
                "batches": 0,
                "batches_done": 0,
                "indexed": 0,
            },
        )
        self.redis.zadd(self.settings.key("jobs"), {job_id: time.time()})

    def track_pending(self, batch: BatchMessage | PackedBatch) -> None:
        """Store ``batch``, packed, until its outcome is committed; call before publishing its
        reference (the worker reads the records from here). A :class:`BatchMessage` (a replay)
        is packed with ``MEDLINE_BATCH_COMPRESSION``, as enqueue packs its batches."""
        packed = (
            batch
            if isinstance(batch, PackedBatch)
            else PackedBatch.from_message(batch, self.settings.batch_compression)
        )
        pipe = self.redis.pipeline()
        pipe.hset(self.pending_key(batch.job_id), batch.batch_id, packed.stored)
        member = self.inflight_member(batch.job_id, batch.batch_id)
        pipe.zadd(self.inflight_key, {member: time.time()})
        pipe.execute()

    def stale_inflight(self, published_before: float) -> list[tuple[str, str]]:
        """(job_id, batch_id) of uncommitted batches last published before that time."""
        members = self.redis.zrangebyscore(self.inflight_key, "-inf", published_before)
        return [tuple(m.decode().split("\t", 1)) for m in members]  # type: ignore[misc]

    def pending_batch(self, job_id: str, batch_id: str) -> PackedBatch | None:
        """The batch as the producer tracked it, or None once its outcome is committed (or
        if it never was tracked).

        :raises pydantic.ValidationError: the stored copy is not a batch.
        """
        raw = self.redis.hget(self.pending_key(job_id), batch_id)
        return PackedBatch.unpack(raw) if raw else None

    def touch_inflight(self, job_id: str, batch_id: str) -> None:
        """Record that the batch was just published again."""
        self.redis.zadd(
            self.inflight_key, {self.inflight_member(job_id, batch_id): time.time()}, xx=True
        )

    def forget_inflight(self, job_id: str, batch_id: str) -> None:
        self.redis.zrem(self.inflight_key, self.inflight_member(job_id, batch_id))

    def finish_enqueue(self, job_id: str, records: int, batches: int) -> None:
        """Record the totals once every batch is on the broker; completes an empty-remainder job."""
        self._finish_enqueue(keys=[self.job_key(job_id)], args=[records, batches, _now()])

    def fail_job(self, job_id: str, error: str) -> None:
        """Mark a job whose producer could not finish; its enqueued batches still run."""
        self.redis.hset(self.job_key(job_id), mapping={"state": "failed", "error": error})

    # --- worker side ---
    def batch_done(self, job_id: str, batch_id: str) -> bool:
        """Whether the batch's outcome is already committed (a redelivery after the commit)."""
        return bool(self.redis.sismember(self.job_key(job_id) + ":batches_done", batch_id))

    def count_delivery(self, job_id: str, batch_id: str, retry: int) -> int:
        """Count one more delivery of attempt ``retry`` of the batch and return the total.

        Retries scheduled on purpose are separate attempts; only repeated deliveries of the same
        attempt (its worker died) add up here, which is how a poison batch is recognised.
        """
        key = self.job_key(job_id) + ":deliveries"
        pipe = self.redis.pipeline()
        pipe.hincrby(key, f"{batch_id}:{retry}", 1)
        pipe.expire(key, DELIVERIES_TTL)
        count, _ = pipe.execute()
        return int(count)

    def commit_batch(self, job_id: str, batch_id: str, outcome: BatchOutcome) -> bool:
        """Apply the batch's outcome to the job and push its dead letters, atomically and once.

        :returns: False when the batch was already committed (nothing changed).
        """
        args: list[object] = [
            batch_id,
            outcome.indexed,
            outcome.deleted,
            outcome.skipped_stale,
            _now(),
            len(outcome.dead_letters),
        ]
        for entry in outcome.dead_letters:
            args += [
                DEAD_LETTER_QUEUES.index(entry.queue) + 1,
                len(entry.records),
                entry.model_dump_json(),
            ]
        args.append(self.inflight_member(job_id, batch_id))
        job_key = self.job_key(job_id)
        keys = [job_key, job_key + ":batches_done"]
        keys += [self.dead_letter_key(q) for q in DEAD_LETTER_QUEUES]
        keys += [self.pending_key(job_id), self.inflight_key]
        return bool(self._commit(keys=keys, args=args))

    # --- readers ---
    def get(self, job_id: str) -> JobSummary | None:
        """The job's summary, or None when no such job exists."""
        raw = self.redis.hgetall(self.job_key(job_id))
        if not raw:
            return None
        return summary_from_hash(job_id, raw)

    def recent(self, limit: int = 10) -> list[JobSummary]:
        """The newest ``limit`` jobs, newest first."""
        ids = self.redis.zrevrange(self.settings.key("jobs"), 0, limit - 1)
        jobs = (self.get(i.decode()) for i in ids)
        return [j for j in jobs if j is not None]


def summary_from_hash(job_id: str, raw: dict[bytes, bytes]) -> JobSummary:
    """Build a :class:`JobSummary` from the job's Redis hash."""
    values = {k.decode(): v.decode() for k, v in raw.items()}

    def number(name: str) -> int:
        return int(values.get(name, 0) or 0)

    def moment(name: str) -> datetime | None:
        value = values.get(name)
        return datetime.fromisoformat(value) if value else None

    return JobSummary(
        job_id=job_id,
        state=values.get("state", "running"),  # type: ignore[arg-type]
        sources=orjson.loads(values.get("sources", "[]")),
        records=number("records"),
        batches=number("batches"),
        batches_done=number("batches_done"),
        indexed=number("indexed"),
        dead_lettered_by_queue={q: number(f"dl:{q}") for q in DEAD_LETTER_QUEUES},
        deleted=number("deleted"),
        skipped_stale=number("skipped_stale"),
        started_at=moment("started_at"),
        enqueued_at=moment("enqueued_at"),
        finished_at=moment("finished_at"),
        error=values.get("error"),
    )
