"""Replay dead letters: send their raw records back through the pipeline as a new job.

An entry is removed from its queue only after its batch is on the broker, so a crash in
between leaves it in place (at-least-once; the writes are idempotent).
"""

from __future__ import annotations

from collections.abc import Iterable

from schemas.dead_letter import DeadLetter
from schemas.messages import BatchMessage
from worker.dead_letters import DeadLetterStore
from worker.jobs import JobStore, new_job_id
from worker.producer import EnqueueResult, Publisher


def replay(
    entries: Iterable[tuple[bytes, DeadLetter]],
    *,
    store: DeadLetterStore,
    jobs: JobStore,
    publish: Publisher,
) -> EnqueueResult:
    """Re-enqueue each entry's records as a batch of a new job ``replay-...``, then remove it.

    :returns: the new job (records and batches sent).
    :raises redis.RedisError / kombu errors: the broker failed; entries not yet sent stay queued.
    """
    result = EnqueueResult(job_id=f"replay-{new_job_id()}")
    jobs.start_job(result.job_id, ["dead-letter replay"])
    try:
        for raw, entry in entries:
            batch = BatchMessage(
                job_id=result.job_id,
                batch_id=f"{result.job_id}:{result.batches:06d}",
                source=entry.source,
                format=entry.format,
                records=entry.records,
                replay_of=entry.id,
            )
            jobs.track_pending(batch)
            publish(batch)
            store.remove(entry, raw)
            result.batches += 1
            result.records += len(entry.records)
    except BaseException as exc:
        jobs.fail_job(result.job_id, f"replay stopped: {exc!r}")
        raise
    jobs.finish_enqueue(result.job_id, result.records, result.batches)
    return result
