"""What a worker does with one batch: parse, validate, index, dead-letter, account.

Plain functions, no Celery: the task in :mod:`worker.tasks` unpacks the message and calls
:func:`process_batch`; tests call these directly, with real or fake stores.

Every record of a batch ends in exactly one place: written to the index, skipped as a stale
revision, deleted, or in a dead-letter queue. :func:`process_batch` either commits that
outcome once (through :meth:`JobStore.commit_batch`) or raises
:class:`~worker.bulk_indexer.TransientBulkError` and commits nothing, so the batch can be retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from elasticsearch import Elasticsearch

from schemas.dead_letter import DeadLetter, FieldError
from schemas.deletion import Deletion
from schemas.document import Document
from schemas.messages import BatchMessage, BatchRef, PackedBatch, RawRecord, RecordFormat
from worker.bulk_indexer import (
    BulkAction,
    BulkLimits,
    BulkResult,
    BulkWriter,
    RequestObserver,
    TransientBulkError,
    bulk_write,
)
from worker.documents import record_span_to_document
from worker.errors import RecordError
from worker.jobs import BatchOutcome, JobStore
from worker.pubmed_xml import xml_record_span_to_document
from worker.settings import Settings

log = logging.getLogger(__name__)

#: Characters of an Elasticsearch error kept in a dead letter's reason.
REASON_LIMIT = 500

#: Turns one raw record of a format, ``data[start:end]`` of a packed batch, into a document
#: (or a deletion); raises RecordError for bad input.
RecordParser = Callable[[bytes, int, int], Document | Deletion]

#: The parser of each format a batch can carry.
PARSERS: dict[RecordFormat, RecordParser] = {
    "medline": record_span_to_document,
    "pubmed-xml": xml_record_span_to_document,
}


class MissingBatchError(Exception):
    """A task message names a batch that is neither pending in Redis nor committed: its records
    were removed from the job's pending hash by something other than its commit."""


def load_batch(jobs: JobStore, message: Any) -> PackedBatch | None:
    """The batch that a task message stands for.

    :param message: a :class:`~schemas.messages.BatchRef` (what producers publish; the batch
        is read from the job's pending hash) or a whole :class:`BatchMessage` (what producers
        published before references, still accepted).
    :returns: None when the referenced batch's outcome is committed already (a redelivery).
    :raises pydantic.ValidationError: the message, or the stored batch, is not a batch.
    :raises MissingBatchError: the referenced batch is neither pending nor committed.
    :raises redis.RedisError: Redis is unreachable; nothing was changed.
    """
    if isinstance(message, dict) and "records" in message:
        return PackedBatch.from_message(BatchMessage.model_validate(message))
    ref = BatchRef.model_validate(message)
    batch = jobs.pending_batch(ref.job_id, ref.batch_id)
    if batch is not None:
        return batch
    if jobs.batch_done(ref.job_id, ref.batch_id):
        return None
    raise MissingBatchError(
        f"batch {ref.batch_id} of job {ref.job_id} is neither pending nor committed: its "
        "records are no longer in Redis"
    )


@dataclass(slots=True)
class ParsedRecord:
    """A record that became a valid document: what writing it takes.

    The validated :class:`Document` itself is not kept: a batch's documents hold hundreds of
    thousands of objects, and keeping them alive to the end of the batch made the garbage
    collector scan them again and again (about 15 % of the parse time). Nor is its raw text:
    :meth:`~schemas.messages.PackedBatch.raw_record` decodes it if it is to be dead-lettered.
    """

    #: The record's position in its batch.
    position: int
    pmid: str
    #: The document's :meth:`~schemas.document.Document.revision_version`.
    version: int
    #: The document's index body (:meth:`~schemas.document.Document.index_json`).
    body: bytes


@dataclass
class ParsedBatch:
    """The records of a batch after parsing: documents to write, citations to delete, and
    dead letters for the rest."""

    documents: list[ParsedRecord]
    deletions: list[Deletion]
    dead_letters: list[DeadLetter]

    def extend(self, other: ParsedBatch) -> None:
        """Append the records of ``other`` (a later part of the same batch)."""
        self.documents += other.documents
        self.deletions += other.deletions
        self.dead_letters += other.dead_letters


def _malformed(batch: PackedBatch, raw: RawRecord, reason: str, **extra: Any) -> DeadLetter:
    return DeadLetter(
        queue="malformed",
        reason=reason,
        job_id=batch.job_id,
        batch_id=batch.batch_id,
        source=batch.source,
        format=batch.format,
        records=[raw],
        **extra,
    )


def parse_batch(batch: PackedBatch, max_record_bytes: int) -> ParsedBatch:
    """Parse and validate each record of the batch.

    Never raises for bad input: a record that is too large, not MEDLINE, or invalid becomes a
    ``malformed`` dead letter with its raw text, and the rest of the batch goes on.
    """
    return parse_records(batch, 0, len(batch), max_record_bytes)


def parse_records(batch: PackedBatch, start: int, stop: int, max_record_bytes: int) -> ParsedBatch:
    """Parse and validate records ``start`` to ``stop`` of ``batch``; as :func:`parse_batch`."""
    parse = PARSERS.get(batch.format)
    data = batch.data
    parsed: list[ParsedRecord] = []
    deletions: list[Deletion] = []
    dead: list[DeadLetter] = []
    for position, (_offset, begin, end) in enumerate(batch.spans(start, stop), start):
        if end - begin > max_record_bytes:
            reason = (
                f"record too large: {end - begin} bytes, over the limit of {max_record_bytes} "
                "(MEDLINE_MAX_RECORD_BYTES)"
            )
        elif parse is None:
            reason = f"no parser for format {batch.format!r}"
        else:
            try:
                document = parse(data, begin, end)
            except RecordError as exc:
                errors = [FieldError.model_validate(e) for e in exc.errors]
                raw = batch.raw_record(position)
                dead.append(_malformed(batch, raw, exc.reason, errors=errors, pmid=exc.pmid))
                continue
            except Exception as exc:  # a parser bug must not lose the record or kill the worker
                log.exception("parser failed on a record of batch %s", batch.batch_id)
                reason = f"internal parser error: {exc!r}"
            else:
                if isinstance(document, Deletion):
                    deletions.append(document)
                else:
                    parsed.append(
                        ParsedRecord(
                            position,
                            document.pmid,
                            document.revision_version(),
                            document.index_json(),
                        )
                    )
                continue
        dead.append(_malformed(batch, batch.raw_record(position), reason))
    return ParsedBatch(parsed, deletions, dead)


def parse_and_index(
    client: Elasticsearch,
    index: str,
    batch: PackedBatch,
    max_record_bytes: int,
    limits: BulkLimits,
    observe: RequestObserver | None = None,
) -> tuple[ParsedBatch, BatchOutcome]:
    """Parse the batch a bulk chunk at a time and write each chunk while parsing the next, so
    that Elasticsearch indexes while this process parses; return what was parsed and the
    outcome (rejections as dead letters, after the batch's malformed records).

    Deletions are written after every document, so a citation indexed and deleted in the same
    batch ends deleted. Documents of different chunks are written concurrently; two revisions
    of one PMID are ordered by their external version.

    :raises TransientBulkError: see :func:`worker.bulk_indexer.bulk_write`; raised once every
        chunk sent has finished.
    """
    parsed = ParsedBatch([], [], [])
    step = max(1, limits.chunk_docs)
    with BulkWriter(client, index, limits, observe=observe) as writer:
        for start in range(0, len(batch), step):
            part = parse_records(batch, start, start + step, max_record_bytes)
            writer.submit(index_actions(part))
            parsed.extend(part)
        result = writer.result()
    result.merge(bulk_write(client, index, delete_actions(parsed), limits, observe=observe))
    return parsed, outcome_of(batch, parsed, result)


def index_actions(parsed: ParsedBatch) -> list[BulkAction]:
    """The writes of ``parsed``'s documents, versioned by their revision."""
    return [
        BulkAction(
            op="index",
            doc_id=record.pmid,
            source=record.body,
            version=record.version,
            ref=record,
        )
        for record in parsed.documents
    ]


def delete_actions(parsed: ParsedBatch) -> list[BulkAction]:
    """The deletes of ``parsed``'s DeleteCitation entries, each versioned so that the delete
    of one version of a citation leaves a later version in place (it counts as stale)."""
    return [
        BulkAction(op="delete", doc_id=d.pmid, version=d.external_version(), ref=d)
        for d in parsed.deletions
    ]


def outcome_of(batch: PackedBatch, parsed: ParsedBatch, result: BulkResult) -> BatchOutcome:
    """The batch's outcome from the bulk results: counts, then the malformed records' dead
    letters and a ``rejected`` one for each document Elasticsearch refused.

    :raises TransientBulkError: Elasticsearch refused a delete (only a broken cluster does).
    """
    outcome = BatchOutcome(
        indexed=sum(1 for a in result.written if a.op == "index"),
        deleted=sum(1 for a in result.written if a.op == "delete"),
        skipped_stale=len(result.stale),
        dead_letters=list(parsed.dead_letters),
    )
    for action, status, error in result.rejected:
        if action.op == "delete":
            # A delete is refused only by a broken cluster (no mapping is involved): retry.
            raise TransientBulkError(f"Elasticsearch refused to delete {action.doc_id}: {error}")
        record: ParsedRecord = action.ref
        reason = f"Elasticsearch refused the document ({status}): {error.get('type', 'error')}"
        if error.get("reason"):
            reason += f": {error['reason']}"
        outcome.dead_letters.append(
            DeadLetter(
                queue="rejected",
                reason=reason[:REASON_LIMIT],
                job_id=batch.job_id,
                batch_id=batch.batch_id,
                source=batch.source,
                format=batch.format,
                records=[batch.raw_record(record.position)],
                pmid=record.pmid,
                document=orjson.loads(record.body),
                es_error={"status": status, **error},
            )
        )
    return outcome


def exhausted_outcome(batch: PackedBatch, reason: str, attempts: int) -> BatchOutcome:
    """The whole raw batch as one ``exhausted`` dead letter, ready to replay."""
    return BatchOutcome(
        dead_letters=[
            DeadLetter(
                queue="exhausted",
                reason=reason,
                job_id=batch.job_id,
                batch_id=batch.batch_id,
                source=batch.source,
                format=batch.format,
                records=batch.records,
                attempts=attempts,
            )
        ]
    )


@dataclass
class BatchReport:
    """What :func:`process_batch` did, for logs and metrics."""

    batch_id: str
    records: int
    outcome: BatchOutcome
    committed: bool
    duration_s: float
    parsed: int = 0


def process_batch(
    batch: PackedBatch,
    *,
    client: Elasticsearch,
    jobs: JobStore,
    settings: Settings,
    attempt: int = 0,
    observe: RequestObserver | None = None,
) -> BatchReport:
    """Run one batch end to end and commit its outcome once.

    :param attempt: the task's retry number; deliveries are counted per attempt so that a batch
        whose worker keeps dying is sent to ``exhausted`` after ``settings.max_deliveries``.
    :raises TransientBulkError: Elasticsearch could not take the batch now; nothing committed.
    :raises redis.RedisError: the job store is unreachable; nothing committed.
    """
    started = time.perf_counter()
    records = len(batch)
    if jobs.batch_done(batch.job_id, batch.batch_id):
        log.info("batch %s already committed; redelivery ignored", batch.batch_id)
        return BatchReport(batch.batch_id, records, BatchOutcome(), False, 0.0)
    deliveries = jobs.count_delivery(batch.job_id, batch.batch_id, attempt)
    if deliveries > settings.max_deliveries:
        outcome = exhausted_outcome(
            batch,
            f"batch delivered {deliveries - 1} times without finishing (its worker died each "
            f"time; MEDLINE_MAX_DELIVERIES={settings.max_deliveries})",
            deliveries - 1,
        )
        committed = jobs.commit_batch(batch.job_id, batch.batch_id, outcome)
        return BatchReport(
            batch.batch_id, records, outcome, committed, time.perf_counter() - started
        )

    limits = BulkLimits.from_settings(settings)
    parsed, outcome = parse_and_index(
        client, settings.index, batch, settings.max_record_bytes, limits, observe
    )
    committed = jobs.commit_batch(batch.job_id, batch.batch_id, outcome)
    return BatchReport(
        batch.batch_id,
        records,
        outcome,
        committed,
        time.perf_counter() - started,
        parsed=len(parsed.documents) + len(parsed.deletions),
    )
