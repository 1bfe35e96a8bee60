"""Logging: readable text by default, one JSON object per line with ``MEDLINE_LOG_FORMAT=json``.

Structured fields passed through ``extra=`` (job_id, batch_id, counts, duration_s, ...) appear as
keys in JSON mode and as ``key=value`` pairs in text mode. Every message is passed through
:func:`redact`, so a URL with a password, or a secret setting's value, never reaches a log line.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from worker.settings import Settings

#: LogRecord attributes that are not structured fields.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)
#: ``scheme://user:password@host`` → ``scheme://user:***@host``.
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@", re.IGNORECASE)

_secrets: list[str] = []


def register_secrets(settings: Settings) -> None:
    """Remember the secret settings' values, so :func:`redact` masks them wherever they appear."""
    _secrets.clear()
    for name in ("redis_password", "es_api_key", "es_password"):
        secret = getattr(settings, name)
        if secret is not None and secret.get_secret_value():
            _secrets.append(secret.get_secret_value())


def redact(text: str) -> str:
    """``text`` with URL passwords and known secret values replaced by ``***``."""
    text = _URL_PASSWORD.sub(r"\g<head>***@", text)
    for secret in _secrets:
        text = text.replace(secret, "***")
    return text


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
            entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
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
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
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
