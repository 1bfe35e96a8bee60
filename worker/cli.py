"""The ``medline-ingest`` command line.

Every command reads its settings from ``MEDLINE_*`` environment variables (see the README).
Errors an operator can cause (a wrong path, a service down, a bad setting) end in one line on
stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import click
import elastic_transport
import orjson
import redis
from pydantic import ValidationError

from schemas.dead_letter import DEAD_LETTER_QUEUES, DeadLetter
from schemas.job import JobSummary
from worker import native
from worker.errors import ConfigurationError, MedlineIngestError
from worker.malloc_tuning import keep_freed_memory
from worker.process_priority import DEFAULT_WORKER_NICE, MAX_NICE, lower_priority
from worker.settings import Settings, get_settings, redact_url, worker_defaults

if TYPE_CHECKING:
    from worker.producer import Publisher

#: Exit status for a usage or input error (a path that names nothing, a bad setting).
EXIT_USAGE = 2
#: Exit status when Redis or Elasticsearch cannot be reached.
EXIT_UNAVAILABLE = 3
#: Exit status of ``enqueue --wait --strict`` when records were dead-lettered.
EXIT_DEAD_LETTERS = 4
#: What ``search`` prints for a citation with no title, as PubMed does.
NO_TITLE = "[No title available]"
#: Seconds between two looks at a job's counters while waiting for it: one small read, and
#: the end of a job is seen within a tenth of a second (half a second was 2 % of a 20 s load).
WAIT_POLL = 0.1


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"medline-ingest: error: {message}", err=True)
    sys.exit(code)


def _settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"MEDLINE_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        fail(f"invalid settings: {problems}")


class CliGroup(click.Group):
    """Turns the errors an operator can cause into one-line messages."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigurationError as exc:
            fail(str(exc))
        except MedlineIngestError as exc:
            fail(str(exc), 1)
        except redis.RedisError as exc:
            settings = _settings()
            fail(
                f"Redis at {redact_url(settings.broker_url)} cannot be reached: {exc}",
                EXIT_UNAVAILABLE,
            )
        except elastic_transport.TransportError as exc:
            settings = _settings()
            fail(
                f"Elasticsearch at {redact_url(settings.es_url)} cannot be reached: {exc.message}",
                EXIT_UNAVAILABLE,
            )
        except BrokenPipeError:
            sys.exit(0)


@click.group(cls=CliGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="medline-ingest")
def main() -> None:
    """Ingest PubMed/MEDLINE into Elasticsearch through a Redis/Celery queue.

    Producers enqueue batches of raw records (enqueue); workers parse, validate and bulk-index
    them (worker); whatever cannot be indexed lands in a dead-letter queue with the reason (dlq).
    Settings come from MEDLINE_* environment variables; see the README.
    """


def _dump_json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode())


def _runtime() -> Any:
    from worker.runtime import get_runtime

    _settings()
    return get_runtime()


def _celery_publisher(settings: Settings) -> Publisher:
    from worker.celery_app import batch_publisher

    return batch_publisher(settings)


# --- enqueue -------------------------------------------------------------------------------------


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--wait", is_flag=True, help="Show progress until the job completes, then a summary.")
@click.option("--strict", is_flag=True, help="With --wait: exit 4 if any record was dead-lettered.")
@click.option("--batch-records", type=click.IntRange(min=1), help="Records per batch.")
@click.option("--batch-bytes", type=click.IntRange(min=1024), help="Raw bytes per batch.")
@click.option("--job-id", help="Use this job id instead of a generated one.")
@click.option(
    "--tune-index",
    is_flag=True,
    help="With --wait: turn off index refresh and replicas during the load, restore after.",
)
@click.option(
    "--timeout", type=click.FloatRange(min=0), help="With --wait: give up after this many seconds."
)
def enqueue(
    paths: tuple[str, ...],
    wait: bool,
    strict: bool,
    batch_records: int | None,
    batch_bytes: int | None,
    job_id: str | None,
    tune_index: bool,
    timeout: float | None,
) -> None:
    """Enqueue the records of PATHS as one job.

    PATHS are MEDLINE text (.txt, .nbib) or PubMed XML files, plain or gzip; directories
    (searched for MEDLINE_INBOX_PATTERNS); globs ('data/*.gz', '**' recurses); or - for stdin.
    A file with a NAME.md5 beside it (as NLM publishes) is checked against it first, and a
    mismatch enqueues nothing. Prints the job id; with --wait, a progress bar and a JSON
    summary at the end.
    """
    from contextlib import nullcontext

    from worker.index_admin import bulk_load_tuning, ensure_index

    if tune_index and not wait:
        fail("--tune-index needs --wait (the settings are restored when the job completes)")
    rt = _runtime()
    if rt.settings.keep_freed_memory:
        keep_freed_memory()
    ensure_index(rt.es, rt.settings)
    with bulk_load_tuning(rt.es, rt.settings.index) if tune_index else nullcontext():
        _enqueue(rt, paths, wait, strict, batch_records, batch_bytes, job_id, timeout)


def _enqueue(
    rt: Any,
    paths: tuple[str, ...],
    wait: bool,
    strict: bool,
    batch_records: int | None,
    batch_bytes: int | None,
    job_id: str | None,
    timeout: float | None,
) -> None:
    from worker.producer import enqueue as enqueue_paths

    settings = rt.settings
    progress = _EnqueueProgress(enabled=wait and sys.stderr.isatty())
    result = enqueue_paths(
        paths,
        settings=settings,
        jobs=rt.jobs,
        publish=_celery_publisher(settings),
        job_id=job_id,
        max_records=batch_records,
        max_bytes=batch_bytes,
        on_progress=progress.update,
        max_queued=settings.max_queued_batches,
        on_wait=_say_waiting,
        check_md5=True,
    )
    progress.close()
    for error in result.errors:
        click.echo(f"medline-ingest: error: {error}", err=True)
    click.echo(
        f"job {result.job_id}: {result.records} records in {result.batches} batches", err=True
    )
    if not wait:
        click.echo(result.job_id)
        sys.exit(EXIT_USAGE if result.errors else 0)
    summary = wait_for_job(rt.jobs, result.job_id, timeout=timeout)
    _dump_json(
        {
            "job_id": summary.job_id,
            "records": summary.records,
            "indexed": summary.indexed,
            "dead_lettered": summary.dead_lettered,
            "duration_s": summary.duration_s,
        }
    )
    if result.errors:
        sys.exit(EXIT_USAGE)
    if summary.state != "completed":
        fail(f"job {summary.job_id} did not complete (state {summary.state})", 1)
    if strict and summary.dead_lettered:
        sys.exit(EXIT_DEAD_LETTERS)


def _say_waiting(queued: int, limit: int) -> None:
    click.echo(
        f"medline-ingest: {queued} batches are waiting in Redis (MEDLINE_MAX_QUEUED_BATCHES="
        f"{limit}); enqueuing goes on as workers take them",
        err=True,
    )


class _EnqueueProgress:
    """A spinner with records enqueued so far, on a terminal only."""

    def __init__(self, enabled: bool) -> None:
        self.progress = None
        if enabled:
            from rich.progress import Progress, SpinnerColumn, TextColumn

            self.progress = Progress(
                SpinnerColumn(), TextColumn("enqueuing: {task.completed} records"), transient=True
            )
            self.task = self.progress.add_task("enqueue", total=None)
            self.progress.start()

    def update(self, records: int, batches: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=records)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def wait_for_job(jobs: Any, job_id: str, timeout: float | None = None) -> JobSummary:
    """Poll the job until it completes (or fails, or ``timeout`` passes), with a progress bar
    on stderr: records indexed / dead-lettered / total, rate and ETA."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("indexed {task.fields[indexed]}  dead-lettered {task.fields[dead]}"),
        TextColumn("{task.fields[rate]:.0f} rec/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task(job_id, total=None, indexed=0, dead=0, rate=0.0)
        while True:
            summary = jobs.get(job_id)
            if summary is None:
                fail(f"no job {job_id}")
            rate = summary.done / summary.duration_s if summary.duration_s else 0.0
            progress.update(
                task,
                total=summary.records or None,
                completed=summary.done,
                indexed=summary.indexed,
                dead=summary.dead_lettered,
                rate=rate,
            )
            if summary.state in ("completed", "failed"):
                return summary
            if deadline is not None and time.monotonic() > deadline:
                return summary
            time.sleep(WAIT_POLL)


# --- worker --------------------------------------------------------------------------------------


@main.command(context_settings={"ignore_unknown_options": True})
@click.option(
    "-c", "--concurrency", type=click.IntRange(min=1), help="Worker processes (default: CPUs)."
)
@click.option(
    "--pool",
    type=click.Choice(["prefork", "solo", "threads"]),
    help="Celery pool (default prefork).",
)
@click.option("-n", "--hostname", help="Node name, e.g. worker1@%h.")
@click.option(
    "--nice",
    type=click.IntRange(0, MAX_NICE),
    help="Niceness of the worker's processes, 0 to leave it (default: MEDLINE_WORKER_NICE, "
    f"{DEFAULT_WORKER_NICE}), so that Elasticsearch on the same host comes first.",
)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(
    concurrency: int | None,
    pool: str | None,
    hostname: str | None,
    nice: int | None,
    celery_args: tuple[str, ...],
) -> None:
    """Run a worker that takes batches from the ingest queue and indexes them.

    SIGTERM shuts it down warm: batches in progress finish, the rest stay queued. Extra
    arguments go to `celery worker` as they are.
    """
    # Settings first: a bad MEDLINE_* value is one line, not a traceback from the app's import.
    settings = _settings()
    pool = pool or settings.worker_pool
    processes = concurrency or settings.worker_concurrency
    # Before the app and the runtime read the settings: they read them afresh from the
    # environment, which the pool processes inherit.
    defaults = worker_defaults(settings, pool, processes or os.cpu_count() or 1)
    if defaults:
        os.environ.update(defaults)
        get_settings.cache_clear()

    from celery.signals import setup_logging

    from worker.celery_app import app
    from worker.log_setup import configure_logging

    # MEDLINE_PARSER=native without the compiled parser: refuse now, not at the first batch.
    native.enabled()

    @setup_logging.connect
    def _use_our_logging(**_: Any) -> None:
        configure_logging(settings)

    argv = ["worker", "-Q", settings.ingest_queue, "--pool", pool]
    # Gossip and mingle exchange state between workers that this program never reads (elections,
    # revoked task ids); restarting gossip after a lost broker connection is also where Celery
    # fails ("Error on restarting Gossip"), so the consumer comes back without them.
    argv += ["--without-gossip", "--without-mingle"]
    if processes:
        argv += ["--concurrency", str(processes)]
    if hostname:
        argv += ["--hostname", hostname]
    argv += ["--loglevel", settings.log_level, *celery_args]
    # Before Celery forks its pool, so that every process of the worker runs at it.
    lower_priority(settings.worker_nice if nice is None else nice)
    app.worker_main(argv)


# --- parse ---------------------------------------------------------------------------------------


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, allow_dash=True))
def parse(files: tuple[str, ...]) -> None:
    """Parse FILES and print one JSON document per valid record on stdout (the body that gets
    indexed) and one JSON line per rejected record on stderr. No service is needed.

    Exits 0 unless a file cannot be read.
    """
    from worker.pipeline import parse_batch
    from worker.producer import STDIN, iter_batches, iter_records, sniff_format

    settings = _settings()
    out = sys.stdout.buffer
    for path in files:
        try:
            from worker.medline_text import open_source

            stream = sys.stdin.buffer if path == STDIN else open_source(path)
        except OSError as exc:
            fail(f"{path}: {exc.strerror or exc}", 1)
        with stream:
            fmt = sniff_format(stream)
            batches = iter_batches(
                iter_records(stream, fmt),
                job_id="parse",
                source=path,
                fmt=fmt,
                max_records=settings.batch_records,
                max_bytes=settings.batch_bytes,
            )
            for batch in batches:
                parsed = parse_batch(batch, settings.max_record_bytes)
                for record in parsed.documents:
                    out.write(record.body + b"\n")
                for deletion in parsed.deletions:
                    out.write(orjson.dumps({"delete": deletion.pmid}) + b"\n")
                for entry in parsed.dead_letters:
                    line = {
                        "source": entry.source,
                        "offset": entry.offset,
                        "pmid": entry.pmid,
                        "reason": entry.reason,
                        "errors": [e.model_dump() for e in entry.errors],
                    }
                    click.echo(orjson.dumps(line, default=str).decode(), err=True)
    out.flush()


# --- job -----------------------------------------------------------------------------------------


@main.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def job(job_id: str, as_json: bool) -> None:
    """Show a job: records, indexed, dead-lettered per queue, timing."""
    rt = _runtime()
    summary = rt.jobs.get(job_id)
    if summary is None:
        fail(f"no job {job_id}")
    if as_json:
        _dump_json(summary.model_dump(mode="json"))
        return
    for key, value in summary.model_dump(mode="json").items():
        click.echo(f"{key:>22}: {value}")


# --- dlq -----------------------------------------------------------------------------------------


@main.group()
def dlq() -> None:
    """Inspect, export, replay and purge the dead-letter queues.

    Queues: malformed (record failed parsing or validation), rejected (Elasticsearch refused
    the document), exhausted (batch could not be indexed within the retry budget).
    """


queue_option = click.option(
    "--queue", "-q", type=click.Choice(DEAD_LETTER_QUEUES), help="Only this queue."
)


@dlq.command("list")
@queue_option
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Entries shown per queue.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def dlq_list(queue: str | None, limit: int, as_json: bool) -> None:
    """Count entries per queue, and list the first entries."""
    rt = _runtime()
    counts = rt.dead_letters.counts()
    queues = [queue] if queue else list(DEAD_LETTER_QUEUES)
    listing: dict[str, Any] = {"counts": counts, "entries": {}}
    for name in queues:
        entries = []
        for i, entry in enumerate(rt.dead_letters.iter_entries(name)):
            if i >= limit:
                break
            entries.append(_entry_line(entry))
        listing["entries"][name] = entries
    if as_json:
        _dump_json(listing)
        return
    for name in queues:
        click.echo(f"{name}: {counts[name]} entries")
        for line in listing["entries"][name]:
            click.echo(
                f"  {line['id']}  {line['source']}@{line['offset']}  pmid={line['pmid']}  "
                f"{line['reason']}"
            )


def _entry_line(entry: DeadLetter) -> dict[str, Any]:
    return {
        "id": entry.id,
        "queue": entry.queue,
        "job_id": entry.job_id,
        "source": entry.source,
        "offset": entry.offset,
        "pmid": entry.pmid,
        "records": len(entry.records),
        "reason": entry.reason,
        "created_at": entry.created_at.isoformat(),
    }


@dlq.command("show")
@click.argument("entry_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the whole entry).")
def dlq_show(entry_id: str, as_json: bool) -> None:
    """Show one entry whole: reason, field errors, raw text."""
    rt = _runtime()
    found = rt.dead_letters.find(entry_id)
    if found is None:
        fail(f"no dead-letter entry {entry_id}")
    _, entry = found
    if as_json:
        _dump_json(entry.model_dump(mode="json"))
        return
    for key, value in _entry_line(entry).items():
        click.echo(f"{key:>10}: {value}")
    for error in entry.errors:
        click.echo(f"     error: {error.field}: {error.message} (value: {error.value!r})")
    if entry.es_error:
        click.echo(f"  es_error: {orjson.dumps(entry.es_error).decode()}")
    for record in entry.records:
        click.echo(f"--- raw record at offset {record.offset} ---")
        click.echo(record.text)


@dlq.command("replay")
@click.argument("entry_ids", nargs=-1)
@queue_option
@click.option("--all", "replay_all", is_flag=True, help="Replay every queue.")
@click.option("--wait", is_flag=True, help="Wait for the replay job to complete.")
def dlq_replay(entry_ids: tuple[str, ...], queue: str | None, replay_all: bool, wait: bool) -> None:
    """Send entries back through the pipeline as a new job (after a fix or an outage).

    Give ENTRY_IDS, or --queue Q for a whole queue, or --all. An entry leaves its queue only
    once its records are re-enqueued; if they fail again they come back with the new reason.
    """
    from worker.replay import replay

    if not (entry_ids or queue or replay_all):
        fail("say what to replay: entry ids, --queue QUEUE or --all")
    rt = _runtime()
    store = rt.dead_letters

    def selected() -> Iterator[tuple[bytes, DeadLetter]]:
        for entry_id in entry_ids:
            found = store.find(entry_id)
            if found is None:
                fail(f"no dead-letter entry {entry_id}")
            yield found
        for name in DEAD_LETTER_QUEUES if replay_all else ([queue] if queue else []):
            # Snapshot the ids first: replay removes entries from the list being read.
            for raw in list(store.iter_raw(name)):
                yield raw, DeadLetter.model_validate_json(raw)

    result = replay(selected(), store=store, jobs=rt.jobs, publish=_celery_publisher(rt.settings))
    click.echo(
        f"replay job {result.job_id}: {result.records} records in {result.batches} batches",
        err=True,
    )
    if wait:
        summary = wait_for_job(rt.jobs, result.job_id)
        _dump_json(summary.model_dump(mode="json"))
    else:
        click.echo(result.job_id)


@dlq.command("purge")
@click.argument("queue", type=click.Choice([*DEAD_LETTER_QUEUES, "all"]))
@click.option("--yes", is_flag=True, help="Really delete the entries.")
def dlq_purge(queue: str, yes: bool) -> None:
    """Delete every entry of QUEUE (or all queues). Needs --yes; export first if in doubt."""
    if not yes:
        fail("purge deletes entries for good; add --yes to confirm")
    rt = _runtime()
    for name in DEAD_LETTER_QUEUES if queue == "all" else [queue]:
        click.echo(f"{name}: purged {rt.dead_letters.purge(name)} entries")


@dlq.command("export")
@queue_option
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    help="Write to FILE instead of stdout.",
)
def dlq_export(queue: str | None, output: str | None) -> None:
    """Write entries as NDJSON (one whole entry a line), oldest first."""
    rt = _runtime()
    sink = open(output, "wb") if output else sys.stdout.buffer  # noqa: SIM115
    count = 0
    try:
        for name in [queue] if queue else DEAD_LETTER_QUEUES:
            for raw in rt.dead_letters.iter_raw(name):
                sink.write(raw + b"\n")
                count += 1
    finally:
        if output:
            sink.close()
        else:
            sink.flush()
    click.echo(f"exported {count} entries", err=True)


# --- search --------------------------------------------------------------------------------------


@main.command()
@click.argument("query")
@click.option("--size", type=click.IntRange(min=0), default=3, show_default=True)
@click.option(
    "--major-topic",
    "major_topics",
    multiple=True,
    metavar="DESCRIPTOR",
    help="Only citations with this MeSH descriptor as a major topic, as PubMed's [majr] "
    "(exact name, e.g. 'Multiple Sclerosis'). Repeat to require several.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the hits as JSON.")
def search(query: str, size: int, major_topics: tuple[str, ...], as_json: bool) -> None:
    """Full-text search of titles and abstracts; prints PMID, year and title of the best hits."""
    rt = _runtime()
    text = {"multi_match": {"query": query, "fields": ["title^2", "abstract"]}}
    topics = [{"term": {"mesh_major_topics": topic}} for topic in major_topics]
    response = rt.es.search(
        index=rt.settings.index,
        query={"bool": {"must": [text], "filter": topics}} if topics else text,
        size=size,
        track_total_hits=True,
    )
    hits = response["hits"]["hits"]
    if as_json:
        _dump_json([h["_source"] for h in hits])
        return
    among = "".join(f" among major topic {topic!r}" for topic in major_topics)
    click.echo(f"{response['hits']['total']['value']} documents match {query!r}{among}")
    for hit in hits:
        source = hit["_source"]
        year = (source.get("pub_date") or {}).get("year", "?")
        click.echo(f"  PMID {source['pmid']} ({year}) {source.get('title') or NO_TITLE}")


# --- commands from other modules -----------------------------------------------------------------

#: Modules that contribute commands, each through a ``COMMANDS`` list of click commands.
COMMAND_MODULES = ("worker.cli_ops", "worker.cli_schedule", "worker.health")


def _register_command_modules() -> None:
    import importlib

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        for command in module.COMMANDS:
            main.add_command(command)


_register_command_modules()

if __name__ == "__main__":
    main()
