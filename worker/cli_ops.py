"""Operations commands: ``medline-ingest status`` and ``medline-ingest exporter``.

Registered by :mod:`worker.cli` through :data:`COMMANDS`. Heavy imports (rich, prometheus-client,
Celery) wait until a command runs, so that ``medline-ingest worker`` can set up
prometheus-client's multiprocess mode before anything imports it.

``status`` exit statuses: 0 when Redis and Elasticsearch both answered (whatever they report:
dead letters, a paused pipeline or no worker are facts to show, not failures of the command);
3 when either could not be reached (what could be read is still printed, and the unreachable
part is named in plain words); 2 for invalid settings. ``--watch`` runs until Ctrl-C and exits 0.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import click
import orjson

if TYPE_CHECKING:
    from schemas.status import JobProgress, Status

#: Exit status when Redis or Elasticsearch cannot be reached (as in worker.cli).
EXIT_UNAVAILABLE = 3


def _settings() -> Any:
    from worker.cli import _settings as cli_settings

    return cli_settings()


# --- status --------------------------------------------------------------------------------------


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _number(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _job_row(job: JobProgress) -> list[str]:
    total = f"{job.records:,}" if job.state != "enqueuing" else f"{job.records:,}+"
    percent = f" ({job.percent:.1f}%)" if job.percent is not None else ""
    overdue = ""
    if job.expected_duration_s and job.elapsed_s and job.elapsed_s > job.expected_duration_s:
        overdue = f" [red](expected {_duration(job.expected_duration_s)})[/]"
    return [
        job.job_id,
        job.state,
        f"{job.done:,}/{total}{percent}",
        f"{job.indexed:,}",
        f"{job.dead_lettered:,}",
        f"{job.rate:,.0f}/s" if job.rate is not None else "-",
        _duration(job.elapsed_s) + overdue,
        _duration(job.eta_s) if job.state == "running" else "-",
    ]


def render_status(status: Status) -> Any:
    """A rich renderable of the snapshot."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = []
    when = status.generated_at.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    parts.append(Text.from_markup(f"[bold]medline-ingest status[/] at {when}"))

    broker = status.broker
    queues = Table(title="Broker (Redis)", title_justify="left", show_header=True)
    queues.add_column("queue")
    queues.add_column("depth", justify="right")
    if broker.reachable:
        queues.add_row(f"ingest ({broker.ingest_queue})", _number(broker.ingest_queue_depth))
        queues.add_row("in flight (unacknowledged)", _number(broker.unacked))
        limit = broker.pending_limit
        if limit and (broker.pending or 0) >= limit:
            queues.add_row(
                f"pending (not yet committed; at the limit {limit:,}: enqueue waits)",
                f"[yellow]{broker.pending:,}[/]",
            )
        else:
            label = f"; enqueue waits at {limit:,}" if limit else ""
            queues.add_row(f"pending (not yet committed{label})", _number(broker.pending))
        for name, depth in (broker.dead_letters or {}).items():
            style = "red" if depth else ""
            queues.add_row(f"dead letters: {name}", f"[{style}]{depth:,}[/]" if style else "0")
        parts.append(queues)
        if broker.paused_reason:
            parts.append(Text.from_markup(f"[bold red]PAUSED:[/] {broker.paused_reason}"))
    else:
        parts.append(Text.from_markup(f"[bold red]Redis:[/] {broker.error}"))

    if status.throughput is not None:
        rates = Table(title="Throughput (records/s)", title_justify="left")
        rates.add_column("window")
        rates.add_column("indexed", justify="right")
        rates.add_column("done", justify="right")
        for window, indexed in status.throughput.indexed_per_second.items():
            done = status.throughput.done_per_second.get(window, 0.0)
            rates.add_row(window, f"{indexed:,.1f}", f"{done:,.1f}")
        parts.append(rates)

    if broker.reachable:
        for title, jobs in (
            ("Running jobs", status.running_jobs),
            ("Recent jobs", status.recent_jobs),
        ):
            if not jobs:
                parts.append(Text(f"{title}: none"))
                continue
            table = Table(title=title, title_justify="left")
            table.add_column("job", no_wrap=True)
            table.add_column("state")
            for column in ("done/records", "indexed", "dead", "rate", "elapsed", "ETA"):
                table.add_column(column, justify="right", no_wrap=True)
            for job in jobs:
                table.add_row(*_job_row(job))
            parts.append(table)

    inbox = status.inbox
    if inbox is not None:
        scanned = (
            inbox.finished_at.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
            if inbox.finished_at
            else "unfinished"
        )
        if inbox.blocked:
            parts.append(Text.from_markup(f"[bold red]Inbox BLOCKED[/] (scan {scanned}): "))
            parts[-1].append(inbox.message or inbox.blocked)
        else:
            line = Text(f"Inbox: last scan {scanned}")
            if inbox.message or inbox.waiting_on:
                line.append(f": {inbox.message or f'waiting on {inbox.waiting_on}'}")
            parts.append(line)

    workers = status.workers
    if workers.reachable and workers.alive:
        table = Table(title=f"Workers alive: {len(workers.alive)}", title_justify="left")
        table.add_column("worker")
        table.add_column("pool")
        table.add_column("concurrency", justify="right")
        for worker in workers.alive:
            table.add_row(worker.name, worker.pool or "-", _number(worker.concurrency))
        parts.append(table)
    elif workers.reachable:
        parts.append(Text.from_markup("[bold red]Workers alive: none answered within 1 s[/]"))
    else:
        parts.append(Text.from_markup(f"[bold red]Workers:[/] {workers.error}"))

    es = status.elasticsearch
    if es.reachable:
        colour = {"green": "green", "yellow": "yellow", "red": "red"}.get(
            es.cluster_health or "", ""
        )
        health = f"[{colour}]{es.cluster_health}[/]" if colour else "unknown"
        documents = (
            _number(es.index_documents)
            if es.index_documents is not None
            else "no index yet (the alias does not exist)"
        )
        line = f"[bold]Elasticsearch[/] {es.url}: cluster {health}; index {es.index}: {documents}"
        if es.error:
            line += f"\n  [red]{es.error}[/]"
        parts.append(Text.from_markup(line))
    else:
        parts.append(Text.from_markup(f"[bold red]Elasticsearch:[/] {es.error}"))
    return Group(*parts)


def _status_json(status: Status, compact: bool) -> str:
    option = 0 if compact else orjson.OPT_INDENT_2
    return orjson.dumps(status.model_dump(mode="json"), option=option).decode()


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with --watch: one line each).")
@click.option("--watch", is_flag=True, help="Refresh in place until Ctrl-C.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.5),
    default=2.0,
    show_default=True,
    help="Seconds between refreshes with --watch.",
)
def status(as_json: bool, watch: bool, interval: float) -> None:
    """Show the pipeline at a glance: queue depths, batches in flight, dead letters,
    throughput over 1/5/15 min, running and recent jobs with ETA, workers alive,
    Elasticsearch health and document count, and the last inbox scan (a blocked inbox in red).

    Exits 0 when Redis and Elasticsearch answered, 3 when either could not be reached (the
    rest is still shown).
    """
    from rich.console import Console

    from worker.exporter import status_gatherer
    from worker.log_setup import register_secrets

    settings = _settings()
    register_secrets(settings)
    gather = status_gatherer(settings)

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 160))  # a pipe or a file: do not squeeze
    if not watch:
        snapshot = gather()
        if as_json:
            click.echo(_status_json(snapshot, compact=False))
        else:
            console.print(render_status(snapshot))
        sys.exit(0 if snapshot.reachable else EXIT_UNAVAILABLE)

    try:
        if as_json:
            while True:
                click.echo(_status_json(gather(), compact=True))
                time.sleep(interval)
        from rich.live import Live

        with Live(render_status(gather()), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                live.update(render_status(gather()), refresh=True)
    except KeyboardInterrupt:
        sys.exit(0)


# --- exporter ------------------------------------------------------------------------------------


@click.command("exporter")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    help="Port to serve /metrics on. Default: MEDLINE_METRICS_PORT.",
)
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
def exporter(port: int | None, host: str) -> None:
    """Serve Prometheus gauges of the broker, jobs, workers and Elasticsearch on /metrics.

    Queue depths, batches in flight, dead-letter depths, the pause flag, throughput, running
    jobs' progress and ETA, workers alive, cluster health, index document count: gathered
    fresh at each scrape. Record and batch counters come from each worker's own /metrics
    (MEDLINE_WORKER_METRICS_PORT). Runs until SIGTERM.
    """
    from worker.exporter import run_exporter
    from worker.log_setup import configure_logging

    settings = _settings()
    configure_logging(settings)
    port = port or settings.metrics_port
    try:
        run_exporter(settings, port, host)
    except OSError as exc:
        from worker.cli import fail

        fail(f"cannot serve on {host}:{port}: {exc.strerror or exc} (MEDLINE_METRICS_PORT)", 1)


#: Commands for ``worker.cli`` to register.
COMMANDS: list[click.Command] = [status, exporter]
