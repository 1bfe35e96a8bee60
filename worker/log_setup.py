"""Logging: readable text by default, one JSON object per line with ``MEDLINE_LOG_FORMAT=json``.

Structured fields passed through ``extra=`` (job_id, batch_id, counts, duration_s, ...) appear as
keys in JSON mode and as ``key=value`` pairs in text mode. Every message, field (nested ones too)
and traceback is passed through :func:`redact`, so a URL with a password, or a secret setting's
value, never reaches a log line.

In a worker, Celery's own output comes through the same formatter: logging is configured at
``celeryd_init``, before Celery checks privileges and warns, and Python warnings are routed to
logging. In JSON mode, Celery's ASCII banner on stdout is replaced by one ``worker_starting``
event (hostname, concurrency, pool, queues, the broker URL with its password masked), and the
notices Celery writes straight to the terminal from its signal handlers ("worker: Warm shutdown")
are written as JSON lines too, as is what libraries print to stdout or stderr, so every line a
JSON-mode worker prints parses as JSON.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
from celery.signals import celeryd_after_setup, celeryd_init
from celery.utils.log import LoggingProxy

from worker.settings import Settings, get_settings

#: LogRecord attributes that are not structured fields.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)
#: ``scheme://user:password@host`` → ``scheme://user:***@host``.
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@", re.IGNORECASE)

_secrets: list[str] = []


def register_secrets(settings: Settings) -> None:
    """Remember the secret settings' values, so :func:`redact` masks them wherever they appear."""
    from urllib.parse import unquote, urlsplit

    _secrets.clear()
    for name in ("redis_password", "es_api_key", "es_password"):
        secret = getattr(settings, name)
        if secret is not None and secret.get_secret_value():
            _secrets.append(secret.get_secret_value())
    for url in (settings.broker_url, settings.es_url):
        password = urlsplit(url).password
        if password:
            _secrets.extend({password, unquote(password)})
    # Longest first, so a secret that contains another is masked whole.
    _secrets.sort(key=len, reverse=True)


def redact(text: str) -> str:
    """``text`` with URL passwords and known secret values replaced by ``***``."""
    text = _URL_PASSWORD.sub(r"\g<head>***@", text)
    for secret in _secrets:
        text = text.replace(secret, "***")
    return text


def redact_value(value: Any) -> Any:
    """:func:`redact` applied to every string in ``value`` (dicts, lists, tuples, sets)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_value(k): redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return redact(bytes(value).decode("utf-8", "replace"))
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact(str(value))


def describe_error(exc: BaseException) -> str:
    """One line saying what went wrong, redacted, for a log line or a dead letter's reason.

    elastic-transport's errors say only "Connection error" through ``str()``; their detail
    (host, port, "Connection refused") is in ``.message``, added here.
    """
    text = str(exc)
    message = getattr(exc, "message", None)
    if isinstance(message, str) and message and message not in text:
        text = f"{text}: {message}" if text else message
    return redact(text or type(exc).__name__)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, structured fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
            "process": record.process,
        }
        for key, value in _fields(record).items():
            entry[key] = redact_value(value)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...``, redacted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        return redact(f"{line} {extra}" if extra else line)


def configure_logging(settings: Settings, stream: Any = None) -> None:
    """Send the root logger to ``stream`` (stderr) in the configured format and level."""
    register_secrets(settings)
    stream = stream or sys.stderr
    if isinstance(stream, LoggingProxy):  # a JSON-mode worker's stderr leads back to logging
        stream = sys.__stderr__
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # Warnings (Celery's SecurityWarning, deprecations) go through the formatter too.
    logging.captureWarnings(True)
    # Client libraries log every request at INFO, and Celery logs every task's arguments (the
    # raw records) on receipt and success; the per-batch event of worker.tasks replaces them.
    for noisy in (
        "elastic_transport.transport",
        "elasticsearch",
        "urllib3",
        "celery.app.trace",
        "celery.worker.strategy",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# --- Celery's own output in a worker ------------------------------------------------------------


def _json_say(msg: str, f: Any = sys.__stderr__) -> None:
    """Stands in for ``celery.apps.worker.safe_say`` in JSON mode: the same notice, as a JSON
    line, written the same way (one ``os.write``, safe in a signal handler)."""
    record = logging.LogRecord(
        "celery.apps.worker", logging.INFO, __file__, 0, msg.strip(), None, None
    )
    record.event = "worker_notice"
    line = JsonFormatter().format(record) + "\n"
    with contextlib.suppress(AttributeError, OSError, ValueError):  # best effort, as Celery's
        os.write(f.fileno(), line.encode())


@celeryd_init.connect
def _configure_before_celery_starts(instance: Any = None, **_: Any) -> None:
    settings = get_settings()
    configure_logging(settings)
    if settings.log_format == "json" and instance is not None:
        import celery.apps.worker

        instance.quiet = True  # no ASCII banner on stdout: see _log_worker_starting
        celery.apps.worker.safe_say = _json_say
        # Libraries that print rather than log (kombu prints "Restoring N unacknowledged
        # message(s)" at shutdown) go through logging too. The handler above keeps the real
        # stderr, so a logged line never comes back here.
        redirected = logging.getLogger("celery.redirected")
        sys.stdout = LoggingProxy(redirected, logging.WARNING)
        sys.stderr = LoggingProxy(redirected, logging.WARNING)


@celeryd_after_setup.connect
def _log_worker_starting(sender: Any = None, instance: Any = None, **_: Any) -> None:
    if instance is None or get_settings().log_format != "json":
        return
    app = instance.app
    pool = instance.pool_cls if isinstance(instance.pool_cls, str) else instance.pool_cls.__module__
    logging.getLogger("celery.apps.worker").info(
        "celery worker %s starting",
        sender,
        extra={
            "event": "worker_starting",
            "hostname": str(sender),
            "concurrency": instance.concurrency,
            "pool": pool.rsplit(".", 1)[-1],
            "queues": sorted(app.amqp.queues.keys()),
            "transport": app.connection().as_uri(),  # kombu masks the password; redact too
            "task_events": bool(instance.task_events),
        },
    )
