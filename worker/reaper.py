"""Re-publish batches the broker lost, so that no record is lost with them.

kombu's Redis transport takes a message off the queue (BRPOP) and only then records it as
unacknowledged; a worker killed between the two loses the message for good, and a warm
shutdown can drop messages already read from the socket. The producer keeps a pending copy of
every batch until its outcome is committed (:meth:`JobStore.track_pending`), and this reaper,
run periodically by the workers, re-publishes a pending batch that is nowhere in the broker:

- it was last published more than ``MEDLINE_VISIBILITY_TIMEOUT`` seconds ago,
- the ingest queue is empty (a queued batch is not lost, only waiting), and
- no worker holds it unacknowledged (a held batch comes back by kombu's own redelivery).

A re-published batch that was not lost after all (a narrow race with a worker taking it) is
delivered twice; the commit is once per batch id and the writes are idempotent, so that costs
work, not correctness.
"""

from __future__ import annotations

import base64
import logging
import time

import orjson
import redis

from worker.jobs import JobStore
from worker.producer import Publisher
from worker.settings import Settings

log = logging.getLogger(__name__)

#: kombu's Redis transport keeps unacknowledged messages in this hash (its default name).
UNACKED_KEY = "unacked"
#: Key suffix of the lock that lets one worker at a time reap.
LOCK_NAME = "reaper-lock"


def unacked_routing_key(entry: bytes) -> str | None:
    """The routing key of one entry of kombu's unacked hash (``[message, exchange, routing
    key]``), which for Celery's routes is the queue's name; None if the entry is not that."""
    try:
        key = orjson.loads(entry)[2]
    except (ValueError, IndexError, TypeError):
        return None
    return key if isinstance(key, str) else None


def held_batch_ids(client: redis.Redis) -> set[str]:
    """Batch ids of the messages that workers hold unacknowledged (or as scheduled retries)."""
    held: set[str] = set()
    for raw in client.hvals(UNACKED_KEY):
        try:
            message = orjson.loads(raw)[0]
            body = message["body"]
            if message.get("properties", {}).get("body_encoding") == "base64":
                body = base64.b64decode(body)
            args = orjson.loads(body)[0]
            held.add(args[0]["batch_id"])
        except (ValueError, KeyError, IndexError, TypeError):
            continue  # not one of our batches
    return held


def reap_lost_batches(
    client: redis.Redis,
    jobs: JobStore,
    settings: Settings,
    publish: Publisher,
    now: float | None = None,
) -> list[str]:
    """Re-publish pending batches that the broker no longer has; return their batch ids.

    Takes a lock so that only one worker reaps at a time; returns [] when another holds it.
    Redis errors propagate (the caller logs and tries again later).
    """
    now = time.time() if now is None else now
    lock = settings.key(LOCK_NAME)
    if not client.set(lock, "1", nx=True, ex=max(10, settings.visibility_timeout // 2)):
        return []
    try:
        stale = jobs.stale_inflight(now - settings.visibility_timeout)
        if not stale or client.llen(settings.ingest_queue) > 0:
            return []
        held = held_batch_ids(client)
        reaped = []
        for job_id, batch_id in stale:
            if batch_id in held:
                continue
            batch = jobs.pending_batch(job_id, batch_id)
            if batch is None:  # committed meanwhile
                jobs.forget_inflight(job_id, batch_id)
                continue
            log.warning(
                "batch %s was lost by the broker; publishing it again",
                batch_id,
                extra={"event": "batch_reaped", "job_id": job_id, "batch_id": batch_id},
            )
            jobs.touch_inflight(job_id, batch_id)
            publish(batch)
            reaped.append(batch_id)
        return reaped
    finally:
        client.delete(lock)
