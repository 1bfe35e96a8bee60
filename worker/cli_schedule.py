"""Commands of scheduled ingestion: ``beat``, ``schedule show | run-now`` and ``files``.

Registered on the ``medline-ingest`` group by :mod:`worker.cli` through :data:`COMMANDS`. This
module does not import :mod:`worker.cli` (which imports it): errors are raised as
:class:`~worker.errors.MedlineIngestError`, which the group turns into one-line messages.
See ``deploy/SCHEDULING.md`` for the whole story.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import click
import orjson

from schemas.ledger import ScanReport
from worker.errors import ConfigurationError, MedlineIngestError

#: Seconds between two looks at the ledger or a job while ``run-now --wait`` waits.
WAIT_POLL = 0.5


def _echo_json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode())


def _runtime() -> Any:
    from pydantic import ValidationError

    from worker.runtime import get_runtime

    try:
        return get_runtime()
    except ValidationError as exc:  # worded as worker.cli words it
        problems = "; ".join(
            f"MEDLINE_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigurationError(f"invalid settings: {problems}") from None


def _describe_schedule(settings: Any) -> dict[str, Any]:
    from worker.celery_app import scan_schedule

    schedule = scan_schedule(settings)
    if settings.schedule_crontab:
        remaining = schedule.remaining_estimate(datetime.now(UTC))  # type: ignore[union-attr]
        return {
            "crontab": settings.schedule_crontab,
            "next_run_in_s": round(remaining.total_seconds()),
        }
    return {"interval_s": settings.schedule_interval}


# --- beat ----------------------------------------------------------------------------------------


@click.command()
def beat() -> None:
    """Run Celery beat: scan the inbox on the schedule of the settings.

    Every MEDLINE_SCHEDULE_INTERVAL seconds, or on MEDLINE_SCHEDULE_CRONTAB when it is set,
    beat sends the inbox scan to the ingest queue; a worker runs it. Run one beat per
    deployment; a second one by mistake ingests nothing twice (the scan takes a lock).
    """
    from celery.signals import setup_logging

    from worker.celery_app import app
    from worker.inbox import inbox_dir
    from worker.log_setup import configure_logging

    rt = _runtime()
    inbox_dir(rt.settings)  # refuse to start without an inbox

    @setup_logging.connect
    def _use_our_logging(**_: Any) -> None:
        configure_logging(rt.settings)

    # The in-memory scheduler: no schedule file to keep, and nothing is lost without one
    # (a missed tick is the next tick; the ledger remembers what was ingested).
    app.Beat(scheduler="celery.beat:Scheduler", loglevel=rt.settings.log_level).run()


# --- schedule ------------------------------------------------------------------------------------


@click.group()
def schedule() -> None:
    """Show the inbox schedule, or scan the inbox now."""


@schedule.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def schedule_show(as_json: bool) -> None:
    """The inbox, its schedule, the lock, the last scan and the files still to ingest."""
    from worker.inbox import Ledger, inbox_dir, pending_files

    rt = _runtime()
    settings = rt.settings
    ledger = Ledger(rt.redis, settings)
    lock_ms = ledger.lock_ttl_ms()
    last_scan = ledger.last_report()
    info = {
        "inbox": str(inbox_dir(settings)),
        "patterns": settings.inbox_patterns,
        "schedule": _describe_schedule(settings),
        "queue": settings.ingest_queue,
        "scan_running": lock_ms > 0,
        "last_scan": last_scan.model_dump(mode="json") if last_scan else None,
        "pending": pending_files(settings, rt.redis),
    }
    if as_json:
        _echo_json(info)
        return
    when = info["schedule"]
    click.echo(f"inbox:     {info['inbox']} ({info['patterns']})")
    if "crontab" in when:
        click.echo(f"schedule:  crontab '{when['crontab']}', next in {when['next_run_in_s']} s")
    else:
        click.echo(f"schedule:  every {when['interval_s']:g} s")
    click.echo(f"scan:      {'running now' if lock_ms > 0 else 'not running'}")
    last = info["last_scan"]
    if last:
        enqueued = ", ".join(f["name"] for f in last["enqueued"]) or "nothing"
        click.echo(f"last scan: {last['finished_at']}: enqueued {enqueued}")
        if last.get("waiting_on"):
            click.echo(f"           waiting on {last['waiting_on']}")
        if last.get("blocked") or last.get("message"):
            click.echo(f"           {last.get('message')}")
    else:
        click.echo("last scan: none yet")
    click.echo(f"pending:   {len(info['pending'])} files")
    for item in info["pending"]:
        click.echo(f"  {item['name']}  ({item['status']})")


@schedule.command("run-now")
@click.option(
    "--retry-failed",
    is_flag=True,
    help="Ingest a failed file again even after it used up its attempts.",
)
@click.option(
    "--allow-replay",
    is_flag=True,
    help="Ingest a new or changed file even if it makes more than MEDLINE_INBOX_MAX_REPLAY "
    "files already applied after it be applied again.",
)
@click.option(
    "--wait",
    is_flag=True,
    help="Keep scanning as jobs complete until every inbox file is ingested (or one blocks).",
)
@click.option(
    "--timeout", type=click.FloatRange(min=0), help="With --wait: give up after this many seconds."
)
@click.option("--json", "as_json", is_flag=True, help="Print the scan reports as JSON.")
def schedule_run_now(
    retry_failed: bool, allow_replay: bool, wait: bool, timeout: float | None, as_json: bool
) -> None:
    """Scan the inbox now, in this process, as beat's scan would.

    Enqueues the next files due, in name order, each as its own job; a file waits for the
    previous file's job to complete. Workers ask for the next scan themselves when a job
    completes; with --wait this command also follows along until nothing is left.
    """
    from worker.celery_app import batch_publisher
    from worker.inbox import scan_inbox

    rt = _runtime()
    publish = batch_publisher(rt.settings)
    deadline = None if timeout is None else time.monotonic() + timeout
    reports = []
    while True:
        report = scan_inbox(
            rt.settings,
            client=rt.redis,
            jobs=rt.jobs,
            publish=publish,
            retry_failed=retry_failed,
            allow_replay=allow_replay,
        )
        # Once is enough: a file that fails again, or another replay, should block again.
        retry_failed = allow_replay = False
        if not report.busy or not wait:
            reports.append(report)
            if not as_json:
                _print_report(report)
        if not wait or report.blocked or report.awaiting_md5:
            break  # what the inbox waits for now is not a job that this command can follow
        if not report.busy and report.waiting_on is None:
            break  # every file done
        if deadline is not None and time.monotonic() > deadline:
            break
        _wait_for_progress(rt, report, deadline)
    if as_json:
        _echo_json([r.model_dump(mode="json") for r in reports])
    if reports and reports[-1].blocked:
        raise MedlineIngestError(reports[-1].message or f"{reports[-1].blocked} blocks the inbox")


def _print_report(report: ScanReport) -> None:
    if report.busy:
        click.echo("another scan is running; nothing done")
        return
    for item in report.enqueued:
        click.echo(
            f"enqueued {item.name} as job {item.job_id} ({item.reason}): "
            f"{item.records} records, {item.state}"
        )
    click.echo(
        f"{report.files} files, {report.skipped} already ingested"
        + (f", waiting on {report.waiting_on}" if report.waiting_on else "")
    )
    if report.message:
        click.echo(report.message)


def _wait_for_progress(rt: Any, report: ScanReport, deadline: float | None) -> None:
    """Sleep until the file the scan waits on has its job finished (or the lock frees)."""
    from worker.inbox import Ledger

    ledger = Ledger(rt.redis, rt.settings)
    while deadline is None or time.monotonic() < deadline:
        time.sleep(WAIT_POLL)
        if report.busy:
            return
        entry = next((e for e in ledger.all().values() if e.name == report.waiting_on), None)
        job = rt.jobs.get(entry.job_id) if entry and entry.job_id else None
        if job is None or job.state in ("completed", "failed"):
            return


# --- files ---------------------------------------------------------------------------------------


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON (every field of every entry).")
def files(as_json: bool) -> None:
    """The inbox ledger: each file seen, its checksum, its last job and what became of it."""
    from worker.inbox import Ledger, apply_job

    rt = _runtime()
    entries = sorted(Ledger(rt.redis, rt.settings).all().values(), key=lambda e: e.name)
    progress: dict[str, str] = {}
    for entry in entries:
        job = rt.jobs.get(entry.job_id) if entry.state == "enqueued" and entry.job_id else None
        if job is not None:
            apply_job(entry, job)  # its job's state now, before the next scan records it
            progress[entry.path] = f" ({job.done}/{job.records} done)" * (job.state == "running")
    if as_json:
        _echo_json([e.model_dump(mode="json") for e in entries])
        return
    if not entries:
        click.echo("the ledger is empty: no inbox file was ingested yet")
        return
    for entry in entries:
        click.echo(
            f"{entry.name}  {entry.state}{progress.get(entry.path, '')}  "
            f"sha256 {entry.sha256[:12]}  "
            f"records {entry.records}  indexed {entry.indexed}  deleted {entry.deleted}  "
            f"stale {entry.skipped_stale}  dead-lettered {entry.dead_lettered}  "
            f"job {entry.job_id}"
        )
        if entry.error:
            click.echo(f"    {entry.error}")


#: The commands this module adds to ``medline-ingest``.
COMMANDS: list[click.Command] = [beat, schedule, files]
