"""Per-process clients of a worker: built once, after the pool forks, reused for every batch."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import redis
from elasticsearch import Elasticsearch

from worker.dead_letters import DeadLetterStore
from worker.es_client import make_client
from worker.jobs import JobStore
from worker.redis_client import make_redis
from worker.settings import Settings, get_settings


@dataclass
class Runtime:
    """Clients and stores for one process. Attributes connect lazily, on first use."""

    settings: Settings
    #: Whether this process has put the template and alias in place.
    index_ready: bool = False

    @cached_property
    def es(self) -> Elasticsearch:
        return make_client(self.settings)

    @cached_property
    def redis(self) -> redis.Redis:
        return make_redis(self.settings)

    @cached_property
    def jobs(self) -> JobStore:
        return JobStore(self.redis, self.settings)

    @cached_property
    def dead_letters(self) -> DeadLetterStore:
        return DeadLetterStore(self.redis, self.settings)


_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    """This process's runtime. Call after fork: clients must not cross a fork."""
    global _runtime
    if _runtime is None:
        _runtime = Runtime(get_settings())
    return _runtime


def reset_runtime() -> None:
    """Forget the clients (after a fork, or in tests)."""
    global _runtime
    _runtime = None
