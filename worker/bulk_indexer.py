"""Bulk writes to Elasticsearch with per-item results, chunked by count and bytes.

Modelled on ``elasticsearch.helpers.streaming_bulk``, with two differences that the pipeline's
promises need: items answered with 5xx are retried like 429s (a shard relocating is as
transient as a full queue), and every item ends in exactly one outcome (written, stale,
rejected) or the whole call raises :class:`TransientBulkError`, which the task retries.

Documents are serialised once, by the caller, to bytes; this module never re-encodes them: a
request body is one ``bytes`` joined from each action's header and source, and the response
is filtered to each item's status and error.

:class:`BulkWriter` sends chunks from background threads while the caller parses the next
ones, so Elasticsearch is kept busy while the worker's CPU does the parsing.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

import elastic_transport
import orjson
from elasticsearch import ApiError, Elasticsearch

from worker.settings import Settings

#: Statuses of a bulk item that mean "try again later", not "this document is wrong".
RETRYABLE_ITEM_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Status of an item refused by external versioning: the index holds a newer revision.
VERSION_CONFLICT = 409
#: The parts of a _bulk response the indexer reads; the rest (ids, versions, shards, seq_no)
#: would be serialised by Elasticsearch and parsed here for nothing.
BULK_FILTER_PATH = "errors,items.*.status,items.*.error"

Operation = Literal["index", "delete"]


class BulkAction:
    """One write. ``source`` is the serialised document (``index`` only).

    A plain class with slots rather than a frozen dataclass: a worker makes one per document,
    and a frozen dataclass sets each field through ``object.__setattr__``, which made building
    a batch's actions cost a microsecond a document.

    :param op: ``index`` or ``delete``.
    :param doc_id: the document id (the PMID).
    :param source: the serialised document (``index`` only).
    :param version: external version (revision) of the document; None writes unconditionally.
    :param ref: the caller's handle, returned with the result (e.g. the record's position in
        its batch).
    """

    __slots__ = ("doc_id", "header", "op", "ref", "source", "version")

    def __init__(
        self,
        op: Operation,
        doc_id: str,
        source: bytes | None = None,
        version: int | None = None,
        ref: Any = None,
    ) -> None:
        self.op = op
        self.doc_id = doc_id
        self.source = source
        self.version = version
        self.ref = ref
        #: The action's metadata line, without its newline.
        self.header = (
            b'{"%s":{"_id":%s}}' % (op.encode(), orjson.dumps(doc_id))
            if version is None
            else b'{"%s":{"_id":%s,"version":%d,"version_type":"external_gte"}}'
            % (op.encode(), orjson.dumps(doc_id), version)
        )

    def __repr__(self) -> str:
        return f"BulkAction(op={self.op!r}, doc_id={self.doc_id!r}, version={self.version!r})"

    def lines(self) -> list[bytes]:
        if self.op == "index":
            assert self.source is not None
            return [self.header, self.source]
        return [self.header]

    def size(self) -> int:
        """Bytes the action takes in a request body, newlines included."""
        if self.op == "index":
            assert self.source is not None
            return len(self.header) + len(self.source) + 2
        return len(self.header) + 1


def request_body(chunk: Sequence[BulkAction]) -> bytes:
    """The NDJSON body of a _bulk request for ``chunk``, in one piece."""
    parts: list[bytes] = []
    for action in chunk:
        parts.append(action.header)
        if action.op == "index":
            assert action.source is not None
            parts.append(action.source)
    parts.append(b"")
    return b"\n".join(parts)


@dataclass
class BulkResult:
    """Per-item outcomes of :func:`bulk_write`. Every action is in exactly one list."""

    written: list[BulkAction] = field(default_factory=list)
    stale: list[BulkAction] = field(default_factory=list)
    rejected: list[tuple[BulkAction, int, dict[str, Any]]] = field(default_factory=list)
    requests: int = 0
    item_retries: int = 0

    def merge(self, other: BulkResult) -> None:
        """Add the outcomes of ``other`` (later writes of the same batch)."""
        self.written += other.written
        self.stale += other.stale
        self.rejected += other.rejected
        self.requests += other.requests
        self.item_retries += other.item_retries


class TransientBulkError(Exception):
    """Elasticsearch could not take the writes now (unreachable, timeout, 429/5xx that
    outlasted the item retries). Retrying the whole batch later is the right answer."""


def _default(name: str) -> Any:
    """The default of setting ``name``: the settings own them, so the two cannot drift."""
    return Settings.model_fields[name].default


@dataclass(frozen=True)
class BulkLimits:
    """Chunking, concurrency and item-retry limits (the ``MEDLINE_BULK_*`` and
    ``MEDLINE_ITEM_*`` settings); each defaults to its setting's default."""

    chunk_docs: int = _default("bulk_chunk_docs")
    chunk_bytes: int = _default("bulk_chunk_bytes")
    in_flight: int = _default("bulk_in_flight")
    item_retries: int = _default("item_retries")
    backoff_initial: float = _default("item_backoff_initial")
    backoff_max: float = _default("item_backoff_max")

    @classmethod
    def from_settings(cls, settings: Settings) -> BulkLimits:
        """The limits ``settings`` set."""
        return cls(
            chunk_docs=settings.bulk_chunk_docs,
            chunk_bytes=settings.bulk_chunk_bytes,
            in_flight=settings.bulk_in_flight,
            item_retries=settings.item_retries,
            backoff_initial=settings.item_backoff_initial,
            backoff_max=settings.item_backoff_max,
        )


#: Called after each _bulk request with (request bytes, seconds taken).
RequestObserver = Callable[[int, float], None]


def chunk_actions(
    actions: Iterable[BulkAction], max_docs: int, max_bytes: int
) -> Iterator[list[BulkAction]]:
    """Group actions into chunks of at most ``max_docs`` actions and ``max_bytes`` bytes.

    An action larger than ``max_bytes`` goes alone in its chunk rather than being dropped.
    """
    chunk: list[BulkAction] = []
    size = 0
    for action in actions:
        action_size = action.size()
        if chunk and (len(chunk) >= max_docs or size + action_size > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(action)
        size += action_size
    if chunk:
        yield chunk


def backoff_delay(attempt: int, initial: float, maximum: float) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(maximum, initial * 2**attempt)]."""
    return random.uniform(0, min(maximum, initial * (2**attempt)))


def bulk_write(
    client: Elasticsearch,
    index: str,
    actions: Sequence[BulkAction],
    limits: BulkLimits,
    *,
    sleep: Callable[[float], None] = time.sleep,
    observe: RequestObserver | None = None,
) -> BulkResult:
    """Send ``actions`` to ``index`` (an alias is fine) through ``_bulk``.

    :returns: every action sorted into written, stale (external version conflict) or rejected
        (any other 4xx, with Elasticsearch's error).
    :raises TransientBulkError: the cluster was unreachable or timed out, the whole request was
        refused with 429/5xx, or items were still answered 429/5xx after ``limits.item_retries``
        retries. Items already written stay written; rewriting them is harmless (idempotent ids).
    """
    result = BulkResult()
    for chunk in chunk_actions(actions, limits.chunk_docs, limits.chunk_bytes):
        result.merge(_write_chunk(client, index, chunk, limits, sleep, observe))
    return result


def _write_chunk(
    client: Elasticsearch,
    index: str,
    chunk: list[BulkAction],
    limits: BulkLimits,
    sleep: Callable[[float], None],
    observe: RequestObserver | None,
) -> BulkResult:
    """Write one chunk, retrying its 429/5xx items; see :func:`bulk_write` for the failures."""
    result = BulkResult()
    pending = chunk
    attempt = 0
    while pending:
        retry = _send_chunk(client, index, pending, result, observe)
        if not retry:
            break
        if attempt >= limits.item_retries:
            statuses = sorted({status for _, status in retry})
            raise TransientBulkError(
                f"{len(retry)} documents still answered {statuses} by Elasticsearch "
                f"after {attempt} retries"
            )
        sleep(backoff_delay(attempt, limits.backoff_initial, limits.backoff_max))
        attempt += 1
        result.item_retries += len(retry)
        pending = [action for action, _ in retry]
    return result


class BulkWriter:
    """Writes chunks of actions from background threads, ``limits.in_flight`` at a time, so
    that the caller can prepare the next chunk while Elasticsearch indexes the previous ones.

    Use as a context manager: :meth:`submit` as actions become ready, then :meth:`result`.
    Leaving the block waits for every chunk sent (none is abandoned half-written).

    Parameters as for :func:`bulk_write`.
    """

    def __init__(
        self,
        client: Elasticsearch,
        index: str,
        limits: BulkLimits,
        *,
        sleep: Callable[[float], None] = time.sleep,
        observe: RequestObserver | None = None,
    ) -> None:
        self._write = lambda chunk: _write_chunk(client, index, chunk, limits, sleep, observe)
        self._limits = limits
        self._pool = ThreadPoolExecutor(
            max_workers=limits.in_flight, thread_name_prefix="medline-bulk"
        )
        self._sent: list[Future[BulkResult]] = []

    def __enter__(self) -> BulkWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._pool.shutdown(wait=True, cancel_futures=exc is not None)

    def submit(self, actions: Iterable[BulkAction]) -> None:
        """Queue ``actions`` for writing, in chunks by ``limits``; returns at once."""
        limits = self._limits
        for chunk in chunk_actions(actions, limits.chunk_docs, limits.chunk_bytes):
            self._sent.append(self._pool.submit(self._write, chunk))

    def result(self) -> BulkResult:
        """Wait for every chunk submitted; their outcomes, in submission order.

        :raises TransientBulkError: as :func:`bulk_write`, once every chunk has finished (the
            first failure is raised; chunks written meanwhile stay written, harmlessly).
        """
        result = BulkResult()
        failure: BaseException | None = None
        for future in self._sent:
            try:
                result.merge(future.result())
            except Exception as exc:  # wait for the other chunks before raising
                failure = failure or exc
        if failure is not None:
            raise failure
        return result


def _send_chunk(
    client: Elasticsearch,
    index: str,
    chunk: list[BulkAction],
    result: BulkResult,
    observe: RequestObserver | None,
) -> list[tuple[BulkAction, int]]:
    """Send one chunk; sort its items into ``result``; return the items to retry."""
    body = request_body(chunk)
    started = time.perf_counter()
    try:
        # require_alias: writing to a missing alias must fail, not auto-create a concrete index
        # with dynamic mappings that would then block the real index and alias.
        response = client.bulk(
            operations=body, index=index, require_alias=True, filter_path=BULK_FILTER_PATH
        )
    except ApiError as exc:
        if exc.meta.status in RETRYABLE_ITEM_STATUSES:
            raise TransientBulkError(
                f"Elasticsearch answered the bulk request with {exc.meta.status}: {exc.message}"
            ) from exc
        raise
    except (elastic_transport.ConnectionError, elastic_transport.ConnectionTimeout) as exc:
        raise TransientBulkError(f"Elasticsearch unreachable: {exc.message}") from exc
    if observe is not None:
        observe(len(body), time.perf_counter() - started)
    result.requests += 1
    if response["errors"] is False:
        # No item carries an error: every one is written (a delete may have found nothing).
        result.written += chunk
        return []

    retry: list[tuple[BulkAction, int]] = []
    for action, item in zip(chunk, response["items"], strict=True):
        outcome = item[action.op]
        status = int(outcome.get("status", 500))
        if status < 300 or (action.op == "delete" and status == 404):
            result.written.append(action)
        elif status == VERSION_CONFLICT and action.version is not None:
            result.stale.append(action)
        elif (
            status == 404
            and (outcome.get("error") or {}).get("type") == "index_not_found_exception"
        ):
            raise TransientBulkError(f"index_not_found: alias {index!r} does not exist")
        elif status in RETRYABLE_ITEM_STATUSES:
            retry.append((action, status))
        else:
            result.rejected.append((action, status, dict(outcome.get("error") or {})))
    return retry
