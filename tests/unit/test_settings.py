"""Settings from the environment, URL redaction, and credential safety of the ES client."""

from __future__ import annotations

import os

import pytest
from elasticsearch.serializer import OrjsonSerializer
from pydantic import ValidationError

from worker.errors import ConfigurationError
from worker.es_client import client_options, make_client
from worker.redis_client import broker_url_with_password, make_redis
from worker.settings import Settings, get_settings, redact_url, worker_defaults
from worker.tasks import budget_spent, retry_delay


def test_settings_come_from_medline_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDLINE_INDEX", "pubmed")
    monkeypatch.setenv("MEDLINE_BATCH_RECORDS", "42")
    settings = Settings()
    assert settings.index == "pubmed"
    assert settings.batch_records == 42
    assert settings.key("dlq", "malformed") == "medline:dlq:malformed"


def test_bad_values_are_refused_with_the_field_named() -> None:
    with pytest.raises(ValidationError, match="es_url"):
        Settings(es_url="localhost:9200")
    with pytest.raises(ValidationError, match="broker_url"):
        Settings(broker_url="amqp://x")


def test_secrets_never_show_in_repr() -> None:
    settings = Settings(es_api_key="s3cr3t-key", redis_password="hunter2")
    assert "s3cr3t" not in repr(settings)
    assert "hunter2" not in str(settings)


def test_redact_url() -> None:
    assert redact_url("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert redact_url("https://u:pw@es:9200") == "https://u:***@es:9200"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"


def test_redis_password_goes_into_the_broker_url() -> None:
    settings = Settings(broker_url="redis://h:6379/2", redis_password="pw")
    assert broker_url_with_password(settings) == "redis://:pw@h:6379/2"


def test_redis_replies_are_parsed_by_hiredis_and_large_values_sent_uncopied() -> None:
    from redis.utils import HIREDIS_AVAILABLE

    assert HIREDIS_AVAILABLE, "hiredis is a dependency (redis[hiredis]); reads are 10x slower"
    client = make_redis(Settings(broker_url="redis://h:6379/2"))
    packer = client.connection_pool.connection_kwargs["command_packer"]
    batch = b"x" * 100_000
    chunks = packer.pack("HSET", "pending", "batch-1", batch)
    assert any(chunk is batch for chunk in chunks)
    assert (
        b"".join(chunks)
        == b"*4\r\n$4\r\nHSET\r\n$7\r\npending\r\n$7\r\nbatch-1\r\n$100000\r\n" + batch + b"\r\n"
    )


def test_credentials_over_plain_http_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="plain http"):
        client_options(Settings(es_url="http://es:9200", es_api_key="k"))
    allowed = Settings(es_url="http://es:9200", es_api_key="k", es_allow_insecure_credentials=True)
    assert client_options(allowed)["api_key"] == "k"
    tls = client_options(Settings(es_url="https://es:9200", es_api_key="k", es_ca_file="/ca.pem"))
    assert tls["ca_certs"] == "/ca.pem"
    assert tls["verify_certs"] is True


def test_bulk_bodies_are_sent_without_copies_other_ndjson_as_before() -> None:
    serializers = make_client(Settings()).transport.serializers
    body = b'{"index":{"_id":"1"}}\n{"pmid":"1"}\n'
    # The mimetype the client sends _bulk with, and the plain one.
    for mimetype in (
        "application/vnd.elasticsearch+x-ndjson; compatible-with=8",
        "application/x-ndjson",
    ):
        serializer = serializers.get_serializer(mimetype)
        assert serializer.dumps(body) is body
        assert serializer.dumps(b'{"a":1}') == b'{"a":1}\n'
        assert serializer.dumps([{"a": 1}, "b"]) == b'{"a":1}\nb\n'


def test_json_requests_and_responses_go_through_orjson() -> None:
    serializers = make_client(Settings()).transport.serializers
    for mimetype in ("application/vnd.elasticsearch+json; compatible-with=8", "application/json"):
        serializer = serializers.get_serializer(mimetype)
        assert isinstance(serializer, OrjsonSerializer)
        assert serializer.loads(b'{"errors":false,"items":[]}') == {"errors": False, "items": []}


def test_username_without_password_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="together"):
        client_options(Settings(es_url="https://es:9200", es_username="elastic"))


def test_retry_delays_grow_are_capped_and_jittered() -> None:
    settings = Settings(batch_backoff_initial=2, batch_backoff_max=60)
    first = [retry_delay(0, settings) for _ in range(50)]
    assert all(1.0 <= d <= 2.0 for d in first)
    assert len(set(first)) > 1
    late = [retry_delay(20, settings) for _ in range(50)]
    assert all(30.0 <= d <= 60.0 for d in late)


def test_budget_is_wall_clock_time_since_the_first_failure() -> None:
    settings = Settings()
    assert settings.batch_retry_budget >= 600  # rides out at least ten minutes of outage
    assert not budget_spent(None, 1e9, settings)
    assert not budget_spent(1000.0, 1000.0 + settings.batch_retry_budget - 1, settings)
    assert budget_spent(1000.0, 1000.0 + settings.batch_retry_budget, settings)


def test_the_broker_carries_json_only_and_acks_late() -> None:
    from worker.celery_app import celery_config

    config = celery_config(Settings())
    assert config["accept_content"] == ["json"]
    assert config["task_serializer"] == "json"
    assert config["result_accept_content"] == ["json"]
    assert config["task_acks_late"] is True
    assert config["task_reject_on_worker_lost"] is True
    assert config["worker_prefetch_multiplier"] == 1
    assert config["broker_transport_options"]["visibility_timeout"] == 3600


@pytest.mark.parametrize(
    ("pool", "batches_at_once", "expected"),
    [
        ("prefork", 1, {"MEDLINE_BULK_IN_FLIGHT": "2"}),
        ("solo", 4, {"MEDLINE_BULK_IN_FLIGHT": "2"}),
        ("threads", 1, {"MEDLINE_BULK_IN_FLIGHT": "2"}),
        ("prefork", 2, {}),
        ("threads", 4, {}),
    ],
)
def test_a_worker_that_handles_one_batch_at_a_time_keeps_two_bulk_requests_in_flight(
    pool: str, batches_at_once: int, expected: dict[str, str]
) -> None:
    assert worker_defaults(Settings(), pool, batches_at_once) == expected


def test_a_bulk_in_flight_that_is_set_is_kept_even_for_one_batch_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert worker_defaults(Settings(bulk_in_flight=1), "prefork", 1) == {}
    monkeypatch.setenv("MEDLINE_BULK_IN_FLIGHT", "1")
    assert worker_defaults(Settings(), "solo", 1) == {}


@pytest.mark.parametrize(("processes", "in_flight"), [("1", 2), ("2", 1)])
def test_the_worker_command_applies_its_defaults_before_the_pool_reads_the_settings(
    monkeypatch: pytest.MonkeyPatch, processes: str, in_flight: int
) -> None:
    from click.testing import CliRunner

    from worker import cli
    from worker.bulk_indexer import BulkLimits
    from worker.celery_app import app

    seen: list[tuple[list[str], int]] = []

    def worker_main(argv: list[str]) -> None:
        # What a pool process would read: the settings afresh, from the environment.
        seen.append((argv, BulkLimits.from_settings(get_settings()).in_flight))

    # Set, then unset: monkeypatch then removes what the command sets in this process.
    monkeypatch.setenv("MEDLINE_BULK_IN_FLIGHT", "1")
    monkeypatch.delenv("MEDLINE_BULK_IN_FLIGHT")
    monkeypatch.setattr(app, "worker_main", worker_main)
    monkeypatch.setattr(cli, "lower_priority", lambda nice: None)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli.main, ["worker", "-c", processes])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    ((argv, limit),) = seen
    assert argv[argv.index("--concurrency") + 1] == processes
    assert limit == in_flight
    assert os.environ.get("MEDLINE_BULK_IN_FLIGHT") == ("2" if processes == "1" else None)
