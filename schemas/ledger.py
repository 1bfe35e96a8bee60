"""The inbox ledger, kept in Redis: one entry per file that the scheduled scan has seen, and
the report of the last scan."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

#: ``enqueuing``: the scan is streaming the file to the broker. ``enqueued``: every batch is on
#: the broker, the job runs. ``completed``: the job completed with no batch exhausted (records
#: dead-lettered as malformed or rejected do not make a file fail: ingesting it again would
#: give the same result). ``failed``: the producer stopped, or batches exhausted their retries;
#: the next scan ingests the file again once its old job is quiet.
LedgerState = Literal["enqueuing", "enqueued", "completed", "failed"]


class LedgerEntry(BaseModel):
    """What the inbox scan knows about one file."""

    path: str = Field(description="Absolute path of the file; the ledger's key.")
    name: str = Field(description="Path relative to the inbox: the order files are applied in.")
    size: int = Field(description="Bytes, when last looked at.")
    mtime_ns: int = Field(description="Modification time (ns since the epoch), when last seen.")
    sha256: str = Field(description="SHA-256 of the file's bytes as ingested.")
    state: LedgerState
    job_id: str | None = None
    seq: int = Field(
        0,
        description="Application order: increases with every file the scan enqueues. A file "
        "whose seq is lower than an earlier-named file's was applied before it, out of order.",
    )
    attempts: int = Field(0, description="Jobs started for this content (same sha256).")
    reason: str | None = Field(None, description="Why the scan enqueued it the last time.")
    records: int = 0
    indexed: int = 0
    deleted: int = 0
    skipped_stale: int = 0
    dead_lettered: int = 0
    exhausted: int = Field(0, description="Records in batches that exhausted their retries.")
    enqueued_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = Field(None, description="Why the last job failed, or what was odd.")


class EnqueuedFile(BaseModel):
    """A file one scan enqueued, as its job."""

    name: str = Field(description="Path relative to the inbox.")
    path: str
    job_id: str | None
    reason: str = Field(description="Why it was enqueued: new, content changed, retried, ...")
    records: int = Field(description="Records enqueued.")
    state: LedgerState = Field(description="Its ledger state once enqueued.")


class ScanReport(BaseModel):
    """What one inbox scan did: returned by the scan, kept in Redis for ``schedule show``, and
    the inbox part of ``status`` and of the exporter's gauges."""

    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    busy: bool = Field(False, description="Another scan held the lock: this one did nothing.")
    files: int = Field(0, description="Files in the inbox that match its patterns.")
    skipped: int = Field(0, description="Files already done and unchanged.")
    enqueued: list[EnqueuedFile] = Field(default_factory=list)
    waiting_on: str | None = Field(
        None, description="The file whose job is running; later files wait for it."
    )
    blocked: str | None = Field(
        None,
        description="A file that blocks the inbox until someone acts (it failed three times, "
        "does not match its .md5, or would replay more than MEDLINE_INBOX_MAX_REPLAY files); "
        "later files wait.",
    )
    awaiting_md5: str | None = Field(
        None,
        description="A file whose .md5 is required (MEDLINE_INBOX_REQUIRE_MD5) and not beside "
        "it yet; later files wait for it.",
    )
    message: str | None = Field(None, description="Why the scan stopped where it did.")
