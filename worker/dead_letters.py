"""Dead-letter queues in Redis: inspect, export, purge. Never trimmed by the program.

Each queue is a Redis list ``{prefix}:dlq:{queue}`` of JSON :class:`~schemas.dead_letter.DeadLetter`
entries, appended by :meth:`worker.jobs.JobStore.commit_batch`. An entry leaves its list only
when an operator replays it (after it is re-enqueued) or purges the queue.
"""

from __future__ import annotations

from collections.abc import Iterator

import redis

from schemas.dead_letter import DEAD_LETTER_QUEUES, DeadLetter
from worker.settings import Settings

#: Entries read from Redis per round trip when scanning a queue.
SCAN_PAGE = 500
#: Key of the flag that workers set while they hold off because dead letters reached the
#: high-water mark; it expires on its own if no worker renews it.
PAUSED_KEY = "paused"
PAUSED_TTL = 60


class DeadLetterStore:
    """The dead-letter queues.

    :param client: Redis client. Redis errors propagate to the caller.
    """

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.settings = settings

    def key(self, queue: str) -> str:
        return self.settings.key("dlq", queue)

    def counts(self) -> dict[str, int]:
        """Entries per queue."""
        pipe = self.redis.pipeline()
        for queue in DEAD_LETTER_QUEUES:
            pipe.llen(self.key(queue))
        return dict(zip(DEAD_LETTER_QUEUES, map(int, pipe.execute()), strict=True))

    def total(self) -> int:
        return sum(self.counts().values())

    def iter_raw(self, queue: str) -> Iterator[bytes]:
        """Every entry's JSON, oldest first, read page by page (constant memory)."""
        start = 0
        while True:
            page = self.redis.lrange(self.key(queue), start, start + SCAN_PAGE - 1)
            if not page:
                return
            yield from page
            start += len(page)

    def iter_entries(self, queue: str) -> Iterator[DeadLetter]:
        for raw in self.iter_raw(queue):
            yield DeadLetter.model_validate_json(raw)

    def find(self, entry_id: str) -> tuple[bytes, DeadLetter] | None:
        """The entry with this id (and its stored JSON), searching every queue."""
        needle = f'"id":"{entry_id}"'.encode()
        for queue in DEAD_LETTER_QUEUES:
            for raw in self.iter_raw(queue):
                if needle in raw:
                    return raw, DeadLetter.model_validate_json(raw)
        return None

    def remove(self, entry: DeadLetter, raw: bytes) -> bool:
        """Remove exactly this stored entry; False if it was already gone."""
        return bool(self.redis.lrem(self.key(entry.queue), 1, raw))

    def purge(self, queue: str) -> int:
        """Delete every entry of ``queue``; returns how many there were."""
        pipe = self.redis.pipeline()
        pipe.llen(self.key(queue))
        pipe.delete(self.key(queue))
        count, _ = pipe.execute()
        return int(count)

    # --- back-pressure ---
    def set_paused(self, reason: str) -> None:
        self.redis.set(self.settings.key(PAUSED_KEY), reason, ex=PAUSED_TTL)

    def clear_paused(self) -> None:
        self.redis.delete(self.settings.key(PAUSED_KEY))

    def paused_reason(self) -> str | None:
        value = self.redis.get(self.settings.key(PAUSED_KEY))
        return value.decode() if value else None
