"""Scheduled ingestion of an inbox: every file ingested once, in name order, one file at a time.

A scan (run by Celery beat through the ``scan_inbox`` task, or by ``medline-ingest schedule
run-now``) lists ``MEDLINE_INBOX_DIR`` for files matching ``MEDLINE_INBOX_PATTERNS``, sorted by
path, and walks them in that order against a ledger kept in Redis:

- a file whose job completed, whose content is unchanged and that was applied after every
  file before it is skipped;
- the first file that is new, changed (new SHA-256), failed, or was applied before an earlier
  file, is enqueued as a job of its own (``inbox-...``) and the scan stops there;
- while that job runs, later scans stop at it and enqueue nothing after it.

**Ordering.** File N+1 is enqueued only once file N's job has *completed* (every batch
committed). Inside a file, batches run in parallel on every worker; across files nothing
overlaps. Revisions would not need this (the index keeps the newest revision by external
versioning), but deletions do: a ``DeleteCitation`` of an update file that overtook the
baseline's insert of the same citation would be undone by it. The same rule makes a file that
is changed, or arrives late with a name that sorts before files already applied, be applied
again *followed by every later file* (their ``seq`` is lower than its new one): the index
always ends as if the files had been applied in name order.

So that the next file does not wait for the next beat tick, the worker that commits the last
batch of an inbox job asks for a scan at once (see :func:`inbox_job_completed`).

**Failures.** A job that failed (the producer stopped: unreadable or corrupt file, broker
lost) or that completed with batches in the ``exhausted`` dead-letter queue (Elasticsearch
stayed down past the retry budget) marks its file ``failed``. The next scan ingests the whole
file again as a new job -- writes are idempotent and versioned, so this is safe -- but only
once the old job has no batch left in flight, and at most :data:`MAX_ATTEMPTS` times for the
same content. After that the file blocks the inbox (later files wait) until it changes or an
operator runs ``schedule run-now --retry-failed``. Records dead-lettered as ``malformed`` or
``rejected`` do not fail a file: ingesting it again would give the same result.

**Replays.** A new or changed file that would make the scan apply again more than
``MEDLINE_INBOX_MAX_REPLAY`` files already applied after it (a new year's baseline put where
it sorts before the year's updates) blocks the inbox until ``schedule run-now
--allow-replay``: that is a day or more of work, most likely not meant.

**Published checksums.** NLM publishes ``NAME.md5`` beside each PubMed file. When such a file
is beside a new or changed inbox file, the scan checks the file's MD5 against it before
enqueuing anything: a mismatch (a truncated or corrupt download) blocks the file, and the files
after it, until either changes, and nothing of it is enqueued. With
``MEDLINE_INBOX_REQUIRE_MD5`` a file without its ``.md5`` waits for it, so that a scan between
the two downloads cannot take the file unchecked.

**One scanner at a time.** A scan holds a Redis lock (``SET NX PX`` with a random token,
renewed while it works, released only by its holder); a second beat process or ``run-now``
finds it taken and does nothing. Ledger writes are fenced by the token: a scanner that lost
its lock (paused past the lock's lifetime) cannot record anything, and stops at its next
renewal.

Keys, under ``settings.key_prefix``:

- ``{p}:inbox:ledger``     hash: absolute path → :class:`~schemas.ledger.LedgerEntry` JSON
- ``{p}:inbox:seq``        counter: application order of enqueued files
- ``{p}:inbox:lock``       the scan lock (token, expires on its own)
- ``{p}:inbox:last_scan``  JSON report of the last scan, for ``schedule show``
"""

from __future__ import annotations

import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import redis
from pydantic import ValidationError

from schemas.job import JobSummary
from schemas.ledger import EnqueuedFile, LedgerEntry, ScanReport
from worker.checksums import MD5_SUFFIX, ChecksumMismatch, check_published_md5, file_digest
from worker.errors import ConfigurationError, MedlineIngestError
from worker.jobs import JobStore, new_job_id
from worker.producer import Publisher, enqueue, resolve_inputs
from worker.settings import Settings

log = logging.getLogger(__name__)

#: Job ids of inbox jobs start with this; workers look for it to request the next scan.
INBOX_JOB_PREFIX = "inbox-"
#: Lifetime of the scan lock, in milliseconds; the holder renews it while it works.
LOCK_TTL_MS = 60_000
#: Jobs started for the same content of a failed file before the file blocks the inbox.
MAX_ATTEMPTS = 3

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

_FENCED_HSET = """
-- KEYS: lock, hash. ARGV: token, field, value
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
"""


class LockLost(MedlineIngestError):
    """The scan lock expired or was taken over; the scan stops without recording more."""


def _now() -> datetime:
    return datetime.now(UTC)


class InboxLock:
    """The scan lock: ``SET NX PX`` with a random token; renewed and released by its holder only.

    :param ttl_ms: lifetime; :meth:`keep_alive` renews it once a third of it has passed.
    """

    def __init__(self, client: redis.Redis, key: str, ttl_ms: int = LOCK_TTL_MS) -> None:
        self.redis = client
        self.key = key
        self.ttl_ms = ttl_ms
        self.token = uuid4().hex
        self._renewed_at = 0.0
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def acquire(self) -> bool:
        """Take the lock if nobody holds it."""
        if self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms):
            self._renewed_at = time.monotonic()
            return True
        return False

    def renew(self) -> None:
        """Extend the lock's lifetime. :raises LockLost: it is no longer ours."""
        if not self._renew(keys=[self.key], args=[self.token, self.ttl_ms]):
            raise LockLost(f"the inbox scan lock {self.key} expired or was taken over")
        self._renewed_at = time.monotonic()

    def keep_alive(self) -> None:
        """Renew when a third of the lifetime has passed (cheap to call often)."""
        if time.monotonic() - self._renewed_at > self.ttl_ms / 3000:
            self.renew()

    def release(self) -> bool:
        """Delete the lock if it is still ours."""
        return bool(self._release(keys=[self.key], args=[self.token]))


class Ledger:
    """The ledger of inbox files in Redis (see the module docstring for the keys)."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.key = settings.key("inbox", "ledger")
        self.seq_key = settings.key("inbox", "seq")
        self.lock_key = settings.key("inbox", "lock")
        self.last_scan_key = settings.key("inbox", "last_scan")
        self._fenced_hset = client.register_script(_FENCED_HSET)

    def all(self) -> dict[str, LedgerEntry]:
        """Every entry, by path."""
        return {
            path.decode(): LedgerEntry.model_validate_json(raw)
            for path, raw in self.redis.hgetall(self.key).items()
        }

    def get(self, path: str) -> LedgerEntry | None:
        raw = self.redis.hget(self.key, path)
        return LedgerEntry.model_validate_json(raw) if raw else None

    def put(self, entry: LedgerEntry, lock: InboxLock) -> None:
        """Record ``entry`` if ``lock`` is still held. :raises LockLost: it is not."""
        if not self._fenced_hset(
            keys=[lock.key, self.key], args=[lock.token, entry.path, entry.model_dump_json()]
        ):
            raise LockLost(f"the inbox scan lock {lock.key} was lost; {entry.name} not recorded")

    def next_seq(self) -> int:
        return int(self.redis.incr(self.seq_key))

    def lock(self) -> InboxLock:
        return InboxLock(self.redis, self.lock_key)

    def lock_ttl_ms(self) -> int:
        """Milliseconds left on the scan lock; negative when nobody holds it."""
        return int(self.redis.pttl(self.lock_key))

    def save_report(self, report: ScanReport) -> None:
        self.redis.set(self.last_scan_key, report.model_dump_json())

    def last_report(self) -> ScanReport | None:
        """The last scan's report, or None if no scan ran yet or it cannot be read.

        One that cannot be read (written by another version, during an upgrade) is logged and
        taken as none: ``status`` and the exporter must not fail on it, and the next scan
        writes a new one.
        """
        raw = self.redis.get(self.last_scan_key)
        if not raw:
            return None
        try:
            return ScanReport.model_validate_json(raw)
        except ValidationError as exc:
            log.warning("the last inbox scan's report cannot be read, ignored: %s", exc)
            return None


def inbox_dir(settings: Settings) -> Path:
    """The inbox directory. :raises ConfigurationError: not set, or not a directory."""
    if not settings.inbox_dir:
        raise ConfigurationError("no inbox: set MEDLINE_INBOX_DIR to the directory to scan")
    path = Path(settings.inbox_dir).resolve()
    if not path.is_dir():
        raise ConfigurationError(f"MEDLINE_INBOX_DIR={settings.inbox_dir}: not a directory")
    return path


def inbox_files(settings: Settings) -> list[tuple[str, str]]:
    """``(name, path)`` of every inbox file matching the patterns, in name order.

    The inbox is searched recursively, as ``enqueue DIR`` searches a directory; hidden files
    (``.name``) are left out, so a file can be written under a hidden name and renamed into
    place when complete; published checksums (``NAME.md5``) are never inputs
    (:func:`~worker.producer.resolve_inputs`). ``name`` is the path relative to the inbox.
    """
    root = inbox_dir(settings)
    patterns = [p.strip() for p in settings.inbox_patterns.split(",") if p.strip()]
    try:
        paths = resolve_inputs([str(root)], patterns)
    except ConfigurationError:  # nothing matches (yet)
        return []
    files = [(os.path.relpath(p, root), p) for p in paths]
    files = [(name, p) for name, p in files if not any(s.startswith(".") for s in Path(name).parts)]
    return sorted(files)


def inbox_job_completed(jobs: JobStore, job_id: str) -> bool:
    """Whether ``job_id`` is an inbox job that has completed: the next file may go."""
    if not job_id.startswith(INBOX_JOB_PREFIX):
        return False
    summary = jobs.get(job_id)
    return summary is not None and summary.state == "completed"


def apply_job(entry: LedgerEntry, job: JobSummary) -> None:
    """Copy the job's counters and outcome onto the entry (not saved)."""
    entry.records, entry.indexed, entry.deleted = job.records, job.indexed, job.deleted
    entry.skipped_stale, entry.dead_lettered = job.skipped_stale, job.dead_lettered
    entry.exhausted = job.dead_lettered_by_queue.get("exhausted", 0)
    if job.state == "running":
        entry.state = "enqueued"
    elif job.state == "failed":
        entry.state, entry.error = "failed", job.error or "job failed"
        entry.finished_at = entry.finished_at or _now()
    elif job.state == "completed":
        entry.finished_at = job.finished_at or _now()
        if entry.exhausted:
            entry.state = "failed"
            entry.error = (
                f"{entry.exhausted} records exhausted their retries (dead-letter queue "
                "'exhausted'); the file will be ingested again"
            )
        else:
            entry.state = "completed"


class InboxScanner:
    """One scan of the inbox; see the module docstring for the rules.

    :param publish: sends a batch to the broker (as ``enqueue`` does).
    :param retry_failed: ingest failed files again even after :data:`MAX_ATTEMPTS`.
    :param allow_replay: ingest a new or changed file even if more than
        ``MEDLINE_INBOX_MAX_REPLAY`` files already applied after it would then be applied again.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        client: redis.Redis,
        jobs: JobStore,
        publish: Publisher,
        retry_failed: bool = False,
        allow_replay: bool = False,
    ) -> None:
        self.settings = settings
        self.redis = client
        self.jobs = jobs
        self.publish = publish
        self.retry_failed = retry_failed
        self.allow_replay = allow_replay
        self.ledger = Ledger(client, settings)
        self.lock = self.ledger.lock()

    def scan(self) -> ScanReport:
        """Walk the inbox in name order and enqueue what is due (at most until a job is running).

        :raises ConfigurationError: the inbox is not configured or not a directory.
        :raises redis.RedisError: Redis failed (the lock expires on its own).
        """
        files = inbox_files(self.settings)
        report = ScanReport(files=len(files))
        if not self.lock.acquire():
            report.busy = True
            report.message = "another scan holds the lock; nothing done"
            report.finished_at = _now()
            return report
        try:
            self._walk(files, report)
        except LockLost as exc:
            report.message = str(exc)
            log.warning("inbox scan stopped: %s", exc)
        finally:
            self.lock.release()
            report.finished_at = _now()
        self.ledger.save_report(report)
        return report

    # --- the walk ---
    def _walk(self, files: list[tuple[str, str]], report: ScanReport) -> None:
        ledger = self.ledger.all()
        applied_up_to = 0  # highest seq among earlier files: a later file must be newer
        for at, (name, path) in enumerate(files):
            self.lock.keep_alive()
            entry = ledger.get(path)
            if entry is not None:
                entry = self._settle(entry)
                if entry.state in ("enqueuing", "enqueued"):
                    report.waiting_on = name
                    return
                if entry.state == "failed" and not self._quiet(entry.job_id):
                    report.waiting_on = name
                    report.message = f"{name}: waiting for the failed job's batches to finish"
                    return
            try:
                stat = os.stat(path)
                sha = self._content_unchanged(entry, stat, path)
            except FileNotFoundError:  # removed since the listing
                continue
            if entry is not None and sha is None:
                if entry.state == "completed" and entry.seq > applied_up_to:
                    applied_up_to = entry.seq
                    report.skipped += 1
                    continue
                if entry.state == "failed":
                    if entry.attempts >= MAX_ATTEMPTS and not self.retry_failed:
                        report.blocked = name
                        report.message = (
                            f"{name} failed {entry.attempts} times: {entry.error}; later files "
                            "wait until it changes or `schedule run-now --retry-failed`"
                        )
                        return
                    reason, attempts = "its last job failed", entry.attempts
                else:
                    reason, attempts = "an earlier file was applied after it", 0
                sha = entry.sha256
            else:
                reason = "new file" if entry is None else "content changed"
                attempts = 0
                # Content the ledger has not seen: checked against its .md5 once, here. Content
                # it has seen was checked when it was new (or had no .md5 then).
                if not self._checksum_allows(name, path, report):
                    return
                if not self._replay_allowed(name, files[at + 1 :], ledger, report):
                    return
            assert sha is not None
            done = self._ingest(name, path, stat, sha, reason, attempts, report)
            if done.state != "completed":
                report.waiting_on = name
                return
            applied_up_to = done.seq

    def _content_unchanged(
        self, entry: LedgerEntry | None, stat: os.stat_result, path: str
    ) -> str | None:
        """None if the file has the content the ledger recorded; else its new SHA-256.

        Size and mtime equal: unchanged, without reading the file. Otherwise the checksum
        decides; a file merely touched keeps its entry (with the new mtime).
        """
        if entry is not None and (entry.size, entry.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
            return None
        sha = file_digest(path, on_chunk=self.lock.keep_alive)
        if entry is None or sha != entry.sha256:
            return sha
        entry.size, entry.mtime_ns = stat.st_size, stat.st_mtime_ns
        self.ledger.put(entry, self.lock)
        return None

    def _checksum_allows(self, name: str, path: str, report: ScanReport) -> bool:
        """Whether ``path`` may be enqueued as far as its published MD5 goes; if not, say why
        in ``report`` (the scan then stops at it, so that later files keep their order)."""
        try:
            if check_published_md5(
                path, self.settings.inbox_require_md5, on_chunk=self.lock.keep_alive
            ):
                return True
        except ChecksumMismatch as exc:
            report.blocked = name
            report.message = f"{name} is not ingested: {exc}; later files wait until it changes"
            return False
        report.awaiting_md5 = name
        report.message = f"{name}: waiting for {name}{MD5_SUFFIX} (MEDLINE_INBOX_REQUIRE_MD5)"
        return False

    def _replay_allowed(
        self,
        name: str,
        later: list[tuple[str, str]],
        ledger: dict[str, LedgerEntry],
        report: ScanReport,
    ) -> bool:
        """Whether the files applied after new or changed ``name`` may all be applied again, as
        its application would make them; if not, say why in ``report`` (the scan stops at it).

        A late daily update replays a few files. A new year's baseline put where it sorts
        before the year's updates would replay every one of them, a day or more of work that
        the operator most likely did not mean: past ``MEDLINE_INBOX_MAX_REPLAY`` it waits.
        """
        replayed = sum(1 for _, path in later if path in ledger)
        if replayed <= self.settings.inbox_max_replay or self.allow_replay:
            return True
        report.blocked = name
        report.message = (
            f"{name} sorts before {replayed} files already applied, which would all be applied "
            f"again after it (MEDLINE_INBOX_MAX_REPLAY is {self.settings.inbox_max_replay}); "
            "move it where it sorts after them (a new year's files after the last year's), "
            "or run `schedule run-now --allow-replay`"
        )
        return False

    def _quiet(self, job_id: str | None) -> bool:
        """Whether the job has no batch left in flight (every batch committed or none sent)."""
        return job_id is None or not self.redis.hlen(self.jobs.pending_key(job_id))

    def _settle(self, entry: LedgerEntry) -> LedgerEntry:
        """Bring an ``enqueuing``/``enqueued`` entry up to date with its job; persist changes."""
        if entry.state not in ("enqueuing", "enqueued") or entry.job_id is None:
            return entry
        job = self.jobs.get(entry.job_id)
        before = entry.model_copy()
        if job is None:
            entry.state, entry.error = "failed", f"job {entry.job_id} is gone from Redis"
        elif job.state == "enqueuing":
            if entry.state == "enqueuing":
                # We hold the lock, so the scan that started this job is gone: it died mid-file.
                reason = "producer stopped: the inbox scan that enqueued the file was interrupted"
                self.jobs.fail_job(entry.job_id, reason)
                entry.state, entry.error = "failed", reason
        else:
            apply_job(entry, job)
        if entry != before:
            self.ledger.put(entry, self.lock)
        return entry

    def _ingest(
        self,
        name: str,
        path: str,
        stat: os.stat_result,
        sha: str,
        reason: str,
        attempts: int,
        report: ScanReport,
    ) -> LedgerEntry:
        """Enqueue the file as a new job and record it; returns the settled entry."""
        entry = LedgerEntry(
            path=path,
            name=name,
            size=stat.st_size,
            mtime_ns=stat.st_mtime_ns,
            sha256=sha,
            state="enqueuing",
            job_id=f"{INBOX_JOB_PREFIX}{new_job_id()}",
            seq=self.ledger.next_seq(),
            attempts=attempts + 1,
            reason=reason,
            enqueued_at=_now(),
        )
        assert entry.job_id is not None
        self.ledger.put(entry, self.lock)
        log.info("inbox: enqueuing %s as job %s (%s)", name, entry.job_id, reason)
        try:
            result = enqueue(
                [path],
                settings=self.settings,
                jobs=self.jobs,
                publish=self.publish,
                job_id=entry.job_id,
                on_progress=lambda _records, _batches: self.lock.keep_alive(),
            )
        except (LockLost, redis.RedisError):
            raise
        except Exception as exc:  # unreadable, corrupt, not XML...: the job is marked failed
            log.warning("inbox: %s could not be enqueued: %s", name, exc)
            entry.state, entry.error, entry.finished_at = "failed", str(exc) or repr(exc), _now()
        else:
            entry.state, entry.records = "enqueued", result.records
            entry.error = "; ".join(result.errors) or None
        self.ledger.put(entry, self.lock)
        entry = self._settle(entry)  # a small file's job may be complete already
        report.enqueued.append(
            EnqueuedFile(
                name=name,
                path=path,
                job_id=entry.job_id,
                reason=reason,
                records=entry.records,
                state=entry.state,
            )
        )
        return entry


def scan_inbox(
    settings: Settings,
    *,
    client: redis.Redis,
    jobs: JobStore,
    publish: Publisher,
    retry_failed: bool = False,
    allow_replay: bool = False,
) -> ScanReport:
    """Run one scan of the inbox; see :class:`InboxScanner`."""
    scanner = InboxScanner(
        settings,
        client=client,
        jobs=jobs,
        publish=publish,
        retry_failed=retry_failed,
        allow_replay=allow_replay,
    )
    return scanner.scan()


def pending_files(settings: Settings, client: redis.Redis) -> list[dict[str, str]]:
    """Inbox files the next scans would ingest, as far as can be told without the lock and
    without reading them: ``{"name", "status"}`` where status is ``new``, ``modified`` (size
    or mtime differs from the ledger: the checksum will decide), ``reapply`` (an earlier
    file was applied after it), or the ledger state when not ``completed``."""
    ledger = Ledger(client, settings).all()
    jobs = JobStore(client, settings)
    pending: list[dict[str, str]] = []
    applied_up_to = 0
    for name, path in inbox_files(settings):
        entry = ledger.get(path)
        if entry is not None and entry.state == "enqueued" and entry.job_id:
            job = jobs.get(entry.job_id)
            if job is not None:
                apply_job(entry, job)  # as the next scan will see it; not saved
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            continue
        if entry is None:
            status = "new"
            applied_up_to = sys.maxsize  # every file after it will be applied again
        elif (entry.size, entry.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
            status = "modified"
        elif entry.state == "completed" and entry.seq > applied_up_to:
            applied_up_to = entry.seq
            continue
        else:
            status = "reapply" if entry.state == "completed" else entry.state
            applied_up_to = max(applied_up_to, entry.seq)
        pending.append({"name": name, "status": status})
    return pending
