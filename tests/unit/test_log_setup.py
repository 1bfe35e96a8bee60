"""Logging: text by default, one JSON object per line in JSON mode, credentials never shown.

Also the Celery hooks: in JSON mode the worker's banner and its terminal notices become JSON
lines, and Python warnings come through the formatter.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import celery.apps.worker
import orjson
import pytest

from worker import log_setup
from worker.log_setup import (
    JsonFormatter,
    TextFormatter,
    configure_logging,
    redact,
    register_secrets,
)
from worker.settings import Settings

REDIS_PW = "r3dis-Pa55word!"
ES_KEY = "ZXNrZXk6c2VjcmV0LWFwaS1rZXk="
ES_PW = "elastic-pw-789"
URL_PW = "in-url-pw-456"


@pytest.fixture
def secret_settings() -> Settings:
    return Settings(
        broker_url=f"redis://ingest:{URL_PW}@redis.example:6379/0",
        redis_password=REDIS_PW,
        es_url="https://es.example:9200",
        es_api_key=ES_KEY,
        es_username="elastic",
        es_password=ES_PW,
        log_format="json",
    )


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    say = celery.apps.worker.safe_say
    stdout, stderr = sys.stdout, sys.stderr
    yield
    sys.stdout, sys.stderr = stdout, stderr
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)
    log_setup._secrets.clear()
    celery.apps.worker.safe_say = say


def emit(settings: Settings, *args: Any, **kwargs: Any) -> list[str]:
    """Configure logging for ``settings`` into a buffer, log once, return the lines."""
    stream = io.StringIO()
    configure_logging(settings, stream=stream)
    logging.getLogger("test").warning(*args, **kwargs)
    return stream.getvalue().splitlines()


SECRETS = (REDIS_PW, ES_KEY, ES_PW, URL_PW)


def test_json_mode_writes_one_object_per_line_with_the_fields(secret_settings: Settings) -> None:
    (line,) = emit(
        secret_settings,
        "batch %s done",
        "b1",
        extra={"event": "batch_done", "job_id": "j1", "indexed": 7, "duration_s": 0.25},
    )
    entry = orjson.loads(line)
    assert entry["level"] == "warning"
    assert entry["logger"] == "test"
    assert entry["message"] == "batch b1 done"
    assert (entry["event"], entry["job_id"], entry["indexed"], entry["duration_s"]) == (
        "batch_done",
        "j1",
        7,
        0.25,
    )
    assert "time" in entry and "process" in entry


@pytest.mark.parametrize("secret", SECRETS)
def test_no_secret_setting_appears_in_a_message_field_or_traceback(
    secret_settings: Settings, secret: str
) -> None:
    try:
        raise ConnectionError(f"cannot connect with {secret}")
    except ConnectionError:
        lines = emit(
            secret_settings,
            "failed with %s",
            secret,
            exc_info=True,
            extra={
                "error": f"auth {secret} refused",
                "nested": {"list": [f"x{secret}x", {"deeper": secret}], secret: 1},
                "as_bytes": secret.encode(),
            },
        )
    text = "\n".join(lines)
    assert secret not in text
    entry = orjson.loads(lines[0])
    assert entry["message"] == "failed with ***"
    assert entry["error"] == "auth *** refused"
    assert entry["nested"] == {"list": ["x***x", {"deeper": "***"}], "***": 1}
    assert "ConnectionError: cannot connect with ***" in entry["exception"]


def test_url_passwords_are_masked_even_unregistered() -> None:
    text = "connecting to rediss://user:s3cr3t@host:6379/0 and https://:p%40ss@es:9200/"
    assert redact(text) == "connecting to rediss://user:***@host:6379/0 and https://:***@es:9200/"


def test_the_password_in_the_broker_url_is_masked_where_it_appears_bare(
    secret_settings: Settings,
) -> None:
    register_secrets(secret_settings)
    assert redact(f"AUTH failed for {URL_PW}") == "AUTH failed for ***"


def test_text_mode_is_readable_and_redacted(secret_settings: Settings) -> None:
    settings = secret_settings.model_copy(update={"log_format": "text"})
    (line,) = emit(settings, "retry: %s", ES_KEY, extra={"job_id": "j1", "cause": ES_PW})
    assert "WARNING" in line and "test: retry: ***" in line
    assert "job_id=j1" in line and "cause=***" in line
    assert ES_KEY not in line and ES_PW not in line
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(line)


def test_formatters_alone_redact(secret_settings: Settings) -> None:
    register_secrets(secret_settings)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "pw=%s", (REDIS_PW,), None)
    assert REDIS_PW not in JsonFormatter().format(record)
    assert REDIS_PW not in TextFormatter().format(record)


def test_warnings_come_through_the_formatter(secret_settings: Settings) -> None:
    stream = io.StringIO()
    configure_logging(secret_settings, stream=stream)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn(f"running as root with {REDIS_PW}", UserWarning, stacklevel=1)
    (line,) = stream.getvalue().splitlines()
    entry = orjson.loads(line)
    assert entry["logger"] == "py.warnings"
    assert "running as root with ***" in entry["message"]


# --- Celery's output in a worker -----------------------------------------------------------------


class FakeWorker(SimpleNamespace):
    pass


def _fake_worker() -> Any:
    app = SimpleNamespace(
        amqp=SimpleNamespace(queues={"ingest": object()}),
        connection=lambda: SimpleNamespace(as_uri=lambda: "redis://ingest:**@redis.example:6379/0"),
    )
    return FakeWorker(
        quiet=False,
        app=app,
        concurrency=4,
        pool_cls="celery.concurrency.prefork",
        task_events=True,
    )


def test_json_mode_replaces_the_banner_with_one_event(
    secret_settings: Settings, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(log_setup, "get_settings", lambda: secret_settings)
    worker = _fake_worker()
    log_setup._configure_before_celery_starts(instance=worker)
    assert worker.quiet is True  # Celery then prints no banner
    log_setup._log_worker_starting(sender="w1@host", instance=worker)
    err = capfd.readouterr().err.splitlines()
    (entry,) = [orjson.loads(line) for line in err]
    assert entry["event"] == "worker_starting"
    assert (entry["hostname"], entry["concurrency"], entry["pool"]) == ("w1@host", 4, "prefork")
    assert entry["queues"] == ["ingest"]
    assert entry["transport"] == "redis://ingest:***@redis.example:6379/0"


def test_text_mode_keeps_celerys_banner(
    secret_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = secret_settings.model_copy(update={"log_format": "text"})
    monkeypatch.setattr(log_setup, "get_settings", lambda: settings)
    worker = _fake_worker()
    log_setup._configure_before_celery_starts(instance=worker)
    assert worker.quiet is False
    assert celery.apps.worker.safe_say is not log_setup._json_say


def test_celerys_terminal_notices_become_json_lines(
    secret_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setattr(log_setup, "get_settings", lambda: secret_settings)
    log_setup._configure_before_celery_starts(instance=_fake_worker())
    assert celery.apps.worker.safe_say is log_setup._json_say
    path = tmp_path / "out"
    with path.open("w") as f:
        celery.apps.worker.safe_say("worker: Warm shutdown (MainProcess)", f)
        os.fsync(f.fileno())
    (line,) = path.read_text().splitlines()
    entry = orjson.loads(line)
    assert entry["message"] == "worker: Warm shutdown (MainProcess)"
    assert entry["event"] == "worker_notice"


def test_what_libraries_print_in_a_json_mode_worker_becomes_json_lines(
    secret_settings: Settings, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(log_setup, "get_settings", lambda: secret_settings)
    log_setup._configure_before_celery_starts(instance=_fake_worker())
    # The worker command configures logging once more (Celery's setup_logging signal): its
    # handler must not write into the redirected stderr, or every line would vanish.
    configure_logging(secret_settings)
    print("Restoring 1 unacknowledged message(s)", file=sys.stderr)
    print(f"connected with {URL_PW}")
    lines = capfd.readouterr().err.splitlines()
    entries = [orjson.loads(line) for line in lines]
    assert [e["message"] for e in entries] == [
        "Restoring 1 unacknowledged message(s)",
        "connected with ***",
    ]
    assert {e["level"] for e in entries} == {"warning"}
