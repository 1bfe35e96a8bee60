"""The Redis connection for the program's own state (jobs, dead letters, ledger)."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.connection import Encoder, PythonRespSerializer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from worker.settings import Settings

log = logging.getLogger(__name__)

#: Seconds to wait for a Redis reply before treating the server as unreachable.
SOCKET_TIMEOUT = 30.0
#: Seconds to wait for a TCP connection to Redis.
CONNECT_TIMEOUT = 10.0
#: Reconnection attempts before an error reaches the caller: with the backoff capped at 5 s this
#: rides out a Redis restart of a few minutes (append-only persistence keeps the data).
RECONNECT_ATTEMPTS = 60
#: Longest wait between two reconnection attempts, in seconds.
RECONNECT_BACKOFF_CAP = 5.0
#: Command arguments longer than this many bytes are sent as they are, not copied into one
#: buffer with the rest of the command (redis-py's own cutoff).
PACK_BUFFER_CUTOFF = 6000


def broker_url_with_password(settings: Settings) -> str:
    """``settings.broker_url`` with ``MEDLINE_REDIS_PASSWORD`` put in, when it is set.

    Celery and kombu read the password from the URL only; they mask it when they log the URL.
    """
    if settings.redis_password is None:
        return settings.broker_url
    parts = urlsplit(settings.broker_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    user = parts.username or ""
    secret = settings.redis_password.get_secret_value()
    return urlunsplit(parts._replace(netloc=f"{user}:{secret}@{host}"))


def command_packer() -> PythonRespSerializer:
    """redis-py's Python command packer, for clients that also have hiredis installed.

    With hiredis, redis-py both parses replies and packs commands with it. Parsing is much
    faster (reading a 1.8 MB batch of 500 records: 1.2 µs of CPU per record against 8.0), but
    packing copies a large argument slowly (writing that batch: 2.8 µs per record against
    1.0 to 2.0); ``tests/benchmarks/bench_broker.py`` measures both. So: hiredis reads, Python
    writes.
    """
    return PythonRespSerializer(PACK_BUFFER_CUTOFF, Encoder("utf-8", "strict", False).encode)


class ReconnectingConnectionPool(redis.ConnectionPool):
    """A connection pool that waits for a Redis it has reached before, instead of failing.

    redis-py retries a command whose connection breaks under it, but not the reconnection the
    pool makes when it hands out a connection whose socket the server has closed since: with
    Redis restarting, that raised "Connection refused" at once and stopped a producer in the
    middle of a job. This pool retries it with the client's retry policy, logging each failed
    attempt. A server that never answered is still reported at once, so that a wrong URL or a
    Redis that is not running fails fast.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reached = False

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        get = super().get_connection
        retry: Retry = self.connection_kwargs["retry"]
        # A client made to fail fast (make_probe_redis sets no retries) is left to fail fast.
        if not self._reached or retry.get_retries() == 0:
            connection = get(*args, **kwargs)
            self._reached = True
            return connection
        return retry.call_with_retry(lambda: get(*args, **kwargs), self._reconnect_failed)

    def _reconnect_failed(self, error: Exception) -> None:
        kwargs = self.connection_kwargs
        where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        log.warning("Redis at %s cannot be reached (%s); trying again", where, error)


def make_redis(settings: Settings) -> redis.Redis:
    """A Redis client for the broker database, with retry on connection errors.

    :raises redis.ConnectionError: only when used: at once if the server never answered, after
        ``RECONNECT_ATTEMPTS`` attempts (minutes) if it answered before and went away.
    """
    kwargs: dict[str, object] = {
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "health_check_interval": 30,
        "retry": Retry(ExponentialBackoff(cap=RECONNECT_BACKOFF_CAP), RECONNECT_ATTEMPTS),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        "command_packer": command_packer(),
    }
    if settings.broker_url.startswith("rediss://") and settings.redis_ca_file:
        kwargs["ssl_ca_certs"] = settings.redis_ca_file
        kwargs["ssl_cert_reqs"] = "required"
    pool = ReconnectingConnectionPool.from_url(broker_url_with_password(settings), **kwargs)
    client = redis.Redis(connection_pool=pool)
    # As Redis.from_url does: the client owns its pool and closes it with itself.
    client.auto_close_connection_pool = True
    return client


def make_probe_redis(settings: Settings, timeout: float) -> redis.Redis:
    """A Redis client that fails within ``timeout`` seconds instead of riding out an outage.

    For what must answer now (``status``, a metrics scrape, a health probe): no retries, so
    :class:`ReconnectingConnectionPool` does not wait for the server either.

    :raises redis.ConnectionError: only when used, if the server does not answer in time.
    """
    client = make_redis(settings)
    client.set_retry(Retry(NoBackoff(), 0))
    client.connection_pool.connection_kwargs.update(
        socket_timeout=timeout, socket_connect_timeout=timeout
    )
    return client
