"""The producer: stream input files into batches of raw records and publish them as one job.

Files are read incrementally (plain or gzip), split into raw records with their byte offsets,
grouped into batches bounded by record count and by bytes, stored packed in Redis
(:class:`~schemas.messages.PackedBatch`) and published to the ingest queue as a JSON
:class:`~schemas.messages.BatchRef`. Memory stays bounded by one batch, whatever the size of the
input. A record stays bytes from the file to Redis: the producer never makes a str of it.
"""

from __future__ import annotations

import glob
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import BinaryIO

from schemas.messages import BatchCompression, BatchMessage, PackedBatch, RecordFormat
from worker.checksums import MD5_SUFFIX, ChecksumMismatch, check_published_md5
from worker.errors import ConfigurationError
from worker.jobs import JobStore, new_job_id
from worker.medline_text import iter_record_bytes, open_source
from worker.settings import Settings

#: Bytes looked at to tell PubMed XML from MEDLINE text.
SNIFF_BYTES = 4096
#: The path that means standard input.
STDIN = "-"

#: Publishes one batch (stored already, see :meth:`JobStore.track_pending`) to the broker.
Publisher = Callable[[BatchMessage | PackedBatch], None]
#: A raw record as the producer batches it: its byte offset in its source and its text as
#: UTF-8 bytes (invalid input replaced), as :func:`worker.medline_text.iter_record_bytes`
#: gives it.
RecordBytes = tuple[int, bytes]
#: Told after each batch is published: (records so far, batches so far).
ProgressCallback = Callable[[int, int], None]
#: Told once, when the producer first waits for room: (batches queued, the limit).
WaitCallback = Callable[[int, int], None]
#: Seconds between two looks at the number of queued batches while waiting for room.
QUEUE_POLL = 0.2


@dataclass
class SourceResult:
    """What the producer found in one input."""

    source: str
    records: int = 0
    batches: int = 0
    error: str | None = None


@dataclass
class EnqueueResult:
    """What one producer call enqueued."""

    job_id: str
    records: int = 0
    batches: int = 0
    sources: list[SourceResult] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return [s.error for s in self.sources if s.error]


def _looks_like_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def resolve_inputs(paths: Iterable[str], dir_patterns: list[str]) -> list[str]:
    """Expand the producer's arguments into input paths, in order.

    Files are taken as given; directories are walked recursively for files matching
    ``dir_patterns``, in name order; globs are expanded (``**`` recurses); ``-`` is stdin. A
    published checksum (``NAME.md5``) that a directory or glob holds is not an input.

    :raises ConfigurationError: a path does not exist, a glob matches nothing, or a directory
        holds no matching file. Raised before anything is enqueued.
    """
    inputs: list[str] = []
    for arg in paths:
        if arg == STDIN:
            inputs.append(STDIN)
        elif os.path.isfile(arg):
            inputs.append(arg)
        elif os.path.isdir(arg):
            found = sorted(
                str(p)
                for p in Path(arg).rglob("*")
                if p.is_file()
                and not p.name.startswith(".")
                and not p.name.endswith(MD5_SUFFIX)
                and any(fnmatch(p.name, pattern) for pattern in dir_patterns)
            )
            if not found:
                raise ConfigurationError(
                    f"{arg}: directory holds no file matching {', '.join(dir_patterns)}"
                )
            inputs.extend(found)
        elif _looks_like_glob(arg):
            found = sorted(
                p
                for p in glob.glob(arg, recursive=True)
                if os.path.isfile(p) and not p.endswith(MD5_SUFFIX)
            )
            if not found:
                raise ConfigurationError(f"{arg}: no file matches this pattern")
            inputs.extend(found)
        elif os.path.exists(arg):
            raise ConfigurationError(f"{arg}: not a regular file or directory")
        else:
            raise ConfigurationError(f"{arg}: no such file or directory")
    return inputs


def sniff_format(stream: BinaryIO) -> RecordFormat:
    """``pubmed-xml`` if the stream starts with XML, else ``medline``. Does not consume input."""
    head = stream.peek(SNIFF_BYTES)[:SNIFF_BYTES] if hasattr(stream, "peek") else b""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return "pubmed-xml" if text.startswith(b"<") else "medline"


def iter_records(stream: BinaryIO, fmt: RecordFormat) -> Iterator[RecordBytes]:
    """Raw records of ``stream`` in format ``fmt``, as ``(offset, UTF-8 text)``."""
    if fmt == "pubmed-xml":
        from worker.pubmed_xml import iter_xml_record_bytes

        return iter_xml_record_bytes(stream)
    return iter_record_bytes(stream)


def _is_record(record: RecordBytes, fmt: RecordFormat) -> bool:
    """Whether ``record`` is a real record, as opposed to junk before the first one."""
    if fmt == "pubmed-xml":
        return True
    return record[1].lstrip().startswith(b"PMID-")


def iter_batches(
    records: Iterable[RecordBytes],
    *,
    job_id: str,
    source: str,
    fmt: RecordFormat,
    max_records: int,
    max_bytes: int,
    first_seq: int = 0,
    compression: BatchCompression = "none",
) -> Iterator[PackedBatch]:
    """Group records into packed batches of at most ``max_records`` records and ``max_bytes``
    bytes of text (a single larger record still gets a batch of its own), stored with
    ``compression`` (see :meth:`PackedBatch.pack`)."""
    seq = first_seq
    offsets: list[int] = []
    texts: list[bytes] = []
    size = 0

    def packed() -> PackedBatch:
        return PackedBatch.pack(
            job_id=job_id,
            batch_id=f"{job_id}:{seq:06d}",
            source=source,
            format=fmt,
            offsets=offsets,
            texts=texts,
            compression=compression,
        )

    for offset, text in records:
        if texts and (len(texts) >= max_records or size + len(text) > max_bytes):
            yield packed()
            seq += 1
            offsets, texts, size = [], [], 0
        offsets.append(offset)
        texts.append(text)
        size += len(text)
    if texts:
        yield packed()


def _records_if_any(
    records: Iterator[RecordBytes], fmt: RecordFormat
) -> Iterator[RecordBytes] | None:
    """``records`` unchanged, or None if the input holds no real record at all.

    Junk before the first record is kept (it will be dead-lettered, not dropped), but an input
    with nothing but junk is an error for the operator, and nothing of it is enqueued.
    """
    held: list[RecordBytes] = []
    for record in records:
        held.append(record)
        if _is_record(record, fmt):
            break
    else:
        return None

    def chained() -> Iterator[RecordBytes]:
        yield from held
        yield from records

    return chained()


def wait_for_room(
    jobs: JobStore,
    limit: int,
    on_wait: WaitCallback | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Return once fewer than ``limit`` batches are queued (stored and not committed).

    :param on_wait: told (queued, limit) if it has to wait at all.
    :returns: whether it waited.
    :raises redis.RedisError: Redis unreachable (after the client's own reconnection attempts).
    """
    queued = jobs.queued_batches()
    if queued < limit:
        return False
    if on_wait is not None:
        on_wait(queued, limit)
    while jobs.queued_batches() >= limit:
        sleep(QUEUE_POLL)
    return True


def enqueue(
    paths: Iterable[str],
    *,
    settings: Settings,
    jobs: JobStore,
    publish: Publisher,
    job_id: str | None = None,
    max_records: int | None = None,
    max_bytes: int | None = None,
    on_progress: ProgressCallback | None = None,
    stdin: BinaryIO | None = None,
    max_queued: int = 0,
    on_wait: WaitCallback | None = None,
    sleep: Callable[[float], None] = time.sleep,
    check_md5: bool = False,
) -> EnqueueResult:
    """Enqueue every record of ``paths`` as one job.

    :param check_md5: before anything is enqueued, check each file that has a ``NAME.md5``
        beside it (as NLM publishes) against it (:mod:`worker.checksums`).

    :param max_queued: before storing each batch, wait while this many batches (of any job)
        are in Redis and not yet committed, so that Redis holds a bounded backlog however large
        the input; 0 never waits. With no worker running, this waits until one starts.

    :returns: per-source counts; ``result.errors`` lists inputs that held no MEDLINE record
        (nothing of those was enqueued).
    :raises ConfigurationError: an argument names nothing (before anything is enqueued).
    :raises ChecksumMismatch: with ``check_md5``, a file does not match its ``.md5`` (before
        anything is enqueued).
    :raises OSError: an input became unreadable while streaming; the job is marked failed and
        what was already enqueued still runs.
    """
    inputs = resolve_inputs(paths, [p.strip() for p in settings.inbox_patterns.split(",")])
    if check_md5:
        for source in inputs:
            if source == STDIN:
                continue
            try:
                check_published_md5(source, required=False)
            except ChecksumMismatch as exc:
                raise ChecksumMismatch(f"{source} is not enqueued: {exc}") from None
    result = EnqueueResult(job_id=job_id or new_job_id())
    jobs.start_job(result.job_id, inputs)
    max_records = max_records or settings.batch_records
    max_bytes = max_bytes or settings.batch_bytes
    try:
        for source in inputs:
            source_result = SourceResult(source)
            result.sources.append(source_result)
            stream = (stdin or sys.stdin.buffer) if source == STDIN else open_source(source)
            try:
                fmt = sniff_format(stream)
                records = _records_if_any(iter_records(stream, fmt), fmt)
                if records is None:
                    source_result.error = f"{source}: holds no MEDLINE or PubMed record"
                    continue
                for batch in iter_batches(
                    records,
                    job_id=result.job_id,
                    source=source,
                    fmt=fmt,
                    max_records=max_records,
                    max_bytes=max_bytes,
                    first_seq=result.batches,
                    compression=settings.batch_compression,
                ):
                    if max_queued and wait_for_room(jobs, max_queued, on_wait, sleep):
                        on_wait = None  # told once per job
                    jobs.track_pending(batch)
                    publish(batch)
                    result.batches += 1
                    result.records += len(batch)
                    source_result.batches += 1
                    source_result.records += len(batch)
                    if on_progress is not None:
                        on_progress(result.records, result.batches)
            finally:
                if source != STDIN:
                    stream.close()
    except BaseException as exc:
        jobs.fail_job(result.job_id, f"producer stopped: {exc!r}")
        raise
    jobs.finish_enqueue(result.job_id, result.records, result.batches)
    return result
