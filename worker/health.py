"""Health probes for a worker container: is this worker's Celery process alive and consuming?

``python -m worker.health ready`` and ``python -m worker.health live`` (also
``medline-ingest health ready|live`` once :data:`COMMANDS` is registered in the CLI) exit 0 when
healthy and 1 when not, with one line that says why. Kubernetes runs them inside the worker's
container, so the default node name, ``celery@<hostname>``, is the worker's own.

Both ask the worker itself, through the broker, with Celery's remote-control ``ping``: the
reply comes from the worker's main process, which also runs the consumer, so a wedged consumer
(a deadlock, a lost broker connection it never recovered from) fails the probe even though the
process still exists. Pool processes busy with batches do not delay the reply (prefork and
threads pools); with ``--pool solo`` the main process runs the batch itself, so give the
liveness probe a failure window longer than a batch.

- ``ready``: the worker answered. Redis unreachable means not ready.
- ``live``: the worker answered, or Redis itself cannot be reached. A broker outage is not the
  worker's fault and restarting it would not help (it reconnects by itself), so liveness does
  not restart every worker of a deployment because Redis is down.
"""

from __future__ import annotations

import signal
import socket
import sys
import time
from dataclasses import dataclass
from typing import Literal

import click
import redis
from pydantic import ValidationError

from worker.settings import Settings, get_settings, redact_url

#: Seconds to wait for the worker's reply by default.
DEFAULT_TIMEOUT = 5.0
#: Seconds for the direct Redis check (connect and PING).
REDIS_TIMEOUT = 3.0
#: Exit status of a failed probe.
EXIT_UNHEALTHY = 1

Probe = Literal["live", "ready"]


@dataclass(frozen=True)
class Result:
    healthy: bool
    message: str


def node_name(node: str | None = None) -> str:
    """The Celery node name to ask; ``%h`` stands for this host's name, as in ``celery -n``."""
    return (node or "celery@%h").replace("%h", socket.gethostname())


def broker_reachable(settings: Settings) -> str | None:
    """``None`` if Redis answers a PING within :data:`REDIS_TIMEOUT`, else why not."""
    from worker.redis_client import make_probe_redis

    client = make_probe_redis(settings, REDIS_TIMEOUT)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"Redis at {redact_url(settings.broker_url)} cannot be reached: {exc}"
    finally:
        client.close()
    return None


def ping_worker(node: str, timeout: float) -> bool:
    """Whether the Celery worker ``node`` answers a remote-control ping within ``timeout``."""
    from worker.celery_app import app

    replies = app.control.ping(destination=[node], timeout=timeout, limit=1)
    return any(node in reply for reply in replies or [])


def check(probe: Probe, settings: Settings, node: str, timeout: float) -> Result:
    """Run ``probe`` against the worker ``node``; see the module's docstring."""
    unreachable = broker_reachable(settings)
    if unreachable is not None:
        if probe == "live":
            return Result(True, f"alive (not checked: {unreachable})")
        return Result(False, f"not ready: {unreachable}")
    started = time.monotonic()
    if ping_worker(node, timeout):
        return Result(True, f"{node} answered in {time.monotonic() - started:.2f} s")
    return Result(False, f"{node} did not answer a ping within {timeout:g} s")


def run(probe: Probe, node: str | None, timeout: float) -> int:
    """Run a probe, print its one-line verdict, and return the exit status."""
    name = node_name(node)

    def _overdue(*_: object) -> None:
        click.echo(f"unhealthy: {probe} probe of {name} took too long", err=True)
        sys.exit(EXIT_UNHEALTHY)

    # Never outlive the probe's own deadline: broker calls can block past their timeouts.
    signal.signal(signal.SIGALRM, _overdue)
    signal.alarm(int(timeout + 2 * REDIS_TIMEOUT) + 1)
    try:
        result = check(probe, get_settings(), name, timeout)
    except ValidationError as exc:
        result = Result(False, f"invalid settings: {exc.error_count()} problems: {exc}")
    finally:
        signal.alarm(0)
    if result.healthy:
        click.echo(f"healthy: {result.message}")
        return 0
    click.echo(f"unhealthy: {result.message}", err=True)
    return EXIT_UNHEALTHY


@click.command("health")
@click.argument("probe", type=click.Choice(["live", "ready"]))
@click.option(
    "--node", "-n", help="Celery node name to ask ('%h' = this host). Default: celery@%h."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds to wait for the worker's reply.",
)
def health(probe: Probe, node: str | None, timeout: float) -> None:
    """Probe the worker on this host: exit 0 if healthy, 1 if not (for Kubernetes probes).

    ready: the worker answers a remote-control ping through the broker. live: it answers, or
    the broker itself is down (restarting the worker would not help then).
    """
    sys.exit(run(probe, node, timeout))


#: Commands for ``worker.cli`` to register (see ``COMMAND_MODULES`` there).
COMMANDS = [health]

if __name__ == "__main__":
    health(prog_name="python -m worker.health")
