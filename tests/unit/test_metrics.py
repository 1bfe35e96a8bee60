"""Worker metrics and the exporter's gauges, without services.

- dead-letter reasons and retry causes map to a small, fixed set of label values;
- a batch's counters move by exactly its outcome, and only when the outcome was committed;
- the helpers the task calls never raise;
- multiprocess mode sums what forked pool processes count, and clears the in-progress gauge of a
  process that died (the prefork promise), in a separate interpreter so the test process keeps
  its own prometheus-client state;
- the exporter's gauges say what the snapshot says, and leave out what it could not read.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import elastic_transport
import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from schemas.dead_letter import DeadLetter
from schemas.ledger import ScanReport
from schemas.messages import BatchMessage, PackedBatch, RawRecord
from schemas.status import (
    BrokerStatus,
    ElasticsearchStatus,
    JobProgress,
    Status,
    Throughput,
    WorkerInfo,
    WorkersStatus,
)
from tests.helpers import api_error, python_output
from worker import metrics
from worker.bulk_indexer import TransientBulkError
from worker.exporter import StatusCollector, status_metrics
from worker.jobs import BatchOutcome
from worker.metrics import (
    REASON_CLASSES,
    RETRY_CAUSES,
    WorkerMetrics,
    reason_class,
    retry_cause,
)
from worker.pipeline import exhausted_outcome, parse_batch


@pytest.fixture
def fresh() -> Iterator[WorkerMetrics]:
    """This process's worker metrics, fresh, in a registry of their own."""
    saved = metrics._metrics
    metrics._metrics = WorkerMetrics(CollectorRegistry())
    yield metrics._metrics
    metrics._metrics = saved


def value(m: WorkerMetrics, name: str, **labels: str) -> float:
    found = m.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def batch(*texts: str) -> PackedBatch:
    message = BatchMessage(
        job_id="job-1",
        batch_id="job-1:000000",
        source="test.txt",
        records=[RawRecord(offset=i * 100, text=t) for i, t in enumerate(texts)],
    )
    return PackedBatch.from_message(message)


def entry(queue: str, reason: str, **extra: object) -> DeadLetter:
    return DeadLetter(
        queue=queue,  # type: ignore[arg-type]
        reason=reason,
        job_id="job-1",
        batch_id="job-1:000000",
        source="test.txt",
        records=[RawRecord(offset=0, text="PMID- 1")],
        **extra,  # type: ignore[arg-type]
    )


# --- classification ------------------------------------------------------------------------------


def test_malformed_reasons_from_the_real_parser_map_to_their_classes() -> None:
    parsed = parse_batch(
        batch(
            "PMID- 123\nTI  - " + "x" * 5000,  # over the size limit below
            "this is not a MEDLINE record at all",
            "PMID- 99ABC\nTI  - A title that is fine.\nDP  - 2003",
        ),
        max_record_bytes=1024,
    )
    classes = [reason_class(d) for d in parsed.dead_letters]
    assert classes[0] == "too_large"
    assert set(classes[1:]) <= {"invalid_fields", "not_parseable"}
    assert all(c in REASON_CLASSES["malformed"] for c in classes)


def test_exhausted_reasons_map_to_retry_budget_or_max_deliveries() -> None:
    message = batch("PMID- 1")
    # The task's wording when the retry budget is spent (worker/tasks.py).
    spent = exhausted_outcome(message, "gave up after 9 retries over the retry budget ...", 10)
    assert reason_class(spent.dead_letters[0]) == "retry_budget"
    # The pipeline's wording when a batch keeps killing its worker (worker/pipeline.py).
    killing = exhausted_outcome(message, "batch delivered 5 times without finishing ...", 5)
    assert reason_class(killing.dead_letters[0]) == "max_deliveries"
    assert reason_class(entry("exhausted", "something new")) == "other"


@pytest.mark.parametrize(
    ("es_error", "reason", "expected"),
    [
        ({"type": "mapper_parsing_exception"}, "", "mapping"),
        ({"type": "document_parsing_exception"}, "", "mapping"),
        ({"type": "illegal_argument_exception"}, "", "illegal_argument"),
        ({"type": "some_brand_new_exception"}, "", "other"),
        (None, "Elasticsearch refused the document (400): mapper_parsing_exception: x", "mapping"),
        (None, "free text nobody planned for", "other"),
    ],
)
def test_rejections_map_to_a_bounded_set(es_error: dict | None, reason: str, expected: str) -> None:
    assert reason_class(entry("rejected", reason or "refused", es_error=es_error)) == expected
    assert expected in REASON_CLASSES["rejected"]


def test_a_reason_never_becomes_a_label_value() -> None:
    secretish = "field 'title': value 'Patient John Doe, DOB 1970' is not allowed"
    assert reason_class(entry("malformed", secretish)) in REASON_CLASSES["malformed"]


def _transient_from(cause: Exception) -> TransientBulkError:
    try:
        raise TransientBulkError(str(cause)) from cause
    except TransientBulkError as exc:
        return exc


@pytest.mark.parametrize(
    ("exc", "cause"),
    [
        (_transient_from(elastic_transport.ConnectionError("refused")), "es_unreachable"),
        (elastic_transport.ConnectionTimeout("slow"), "es_unreachable"),
        (_transient_from(api_error(429)), "es_overloaded"),
        (_transient_from(api_error(503)), "es_error"),
        (TransientBulkError("3 documents still answered {429} by Elasticsearch"), "es_overloaded"),
        (TransientBulkError("index_not_found: alias 'x' does not exist"), "index_missing"),
        (redis.ConnectionError("Error 111 connecting"), "redis_unreachable"),
        (ValueError("a bug"), "other"),
    ],
)
def test_retry_causes(exc: BaseException, cause: str) -> None:
    assert retry_cause(exc) == cause
    assert cause in RETRY_CAUSES


# --- counting ------------------------------------------------------------------------------------


def test_a_committed_batch_moves_each_counter_by_its_outcome(fresh: WorkerMetrics) -> None:
    outcome = BatchOutcome(
        indexed=7,
        deleted=2,
        skipped_stale=1,
        dead_letters=[
            entry("malformed", "record too large: 3000000 bytes"),
            entry("malformed", "record too large: 3000001 bytes"),
            entry("rejected", "refused", es_error={"type": "mapper_parsing_exception"}),
        ],
    )
    metrics.observe_batch(outcome, committed=True, duration_s=1.5, parsed=10)
    assert value(fresh, "medline_records_indexed_total") == 7
    assert value(fresh, "medline_records_parsed_total") == 10
    assert value(fresh, "medline_records_deleted_total") == 2
    assert value(fresh, "medline_records_skipped_stale_total") == 1
    assert (
        value(fresh, "medline_records_dead_lettered_total", queue="malformed", reason="too_large")
        == 2
    )
    assert (
        value(fresh, "medline_records_dead_lettered_total", queue="rejected", reason="mapping") == 1
    )
    assert value(fresh, "medline_batches_processed_total", outcome="committed") == 1
    assert value(fresh, "medline_batch_duration_seconds_count") == 1
    assert value(fresh, "medline_batch_duration_seconds_sum") == 1.5


def test_an_exhausted_batch_counts_every_record_it_holds(fresh: WorkerMetrics) -> None:
    outcome = exhausted_outcome(batch("PMID- 1", "PMID- 2", "PMID- 3"), "gave up after 3", 4)
    metrics.observe_batch(outcome, committed=True, duration_s=0.0)
    assert value(fresh, "medline_batches_processed_total", outcome="exhausted") == 1
    labels = {"queue": "exhausted", "reason": "retry_budget"}
    assert value(fresh, "medline_records_dead_lettered_total", **labels) == 3
    assert value(fresh, "medline_batch_duration_seconds_count") == 0


def test_a_redelivered_batch_counts_as_duplicate_and_no_record_twice(
    fresh: WorkerMetrics,
) -> None:
    metrics.observe_batch(BatchOutcome(indexed=5), committed=False, duration_s=0.0)
    assert value(fresh, "medline_records_indexed_total") == 0
    assert value(fresh, "medline_batches_processed_total", outcome="duplicate") == 1


def test_retries_bulk_requests_and_unreadable_messages_are_counted(
    fresh: WorkerMetrics,
) -> None:
    metrics.observe_retry("es_unreachable")
    metrics.observe_retry("not a known cause")
    metrics.observe_bulk_request(1000, 0.2)
    metrics.observe_bulk_request(500, 0.3)
    metrics.observe_unreadable(entry("malformed", "message is not a batch: 2 problems"))
    assert value(fresh, "medline_batches_retried_total", cause="es_unreachable") == 1
    assert value(fresh, "medline_batches_retried_total", cause="other") == 1
    assert value(fresh, "medline_bulk_request_bytes_total") == 1500
    assert value(fresh, "medline_bulk_request_duration_seconds_count") == 2
    labels = {"queue": "malformed", "reason": "unreadable_message"}
    assert value(fresh, "medline_records_dead_lettered_total", **labels) == 1
    assert value(fresh, "medline_batches_processed_total", outcome="unreadable") == 1


def test_in_progress_goes_up_and_back_down_even_when_the_batch_fails(
    fresh: WorkerMetrics,
) -> None:
    with metrics.batch_in_progress():
        assert value(fresh, "medline_batches_in_progress") == 1
    with pytest.raises(RuntimeError), metrics.batch_in_progress():
        raise RuntimeError("batch failed")
    assert value(fresh, "medline_batches_in_progress") == 0


def test_every_series_exists_at_zero_before_the_first_batch(fresh: WorkerMetrics) -> None:
    text = generate_latest(fresh.registry).decode()
    for queue, classes in REASON_CLASSES.items():
        for reason in classes:
            line = f'medline_records_dead_lettered_total{{queue="{queue}",reason="{reason}"}} 0.0'
            assert line in text
    for cause in RETRY_CAUSES:
        assert f'medline_batches_retried_total{{cause="{cause}"}} 0.0' in text


def test_metric_names_follow_the_conventions(fresh: WorkerMetrics) -> None:
    for family in fresh.registry.collect():
        assert family.name.startswith("medline_")
        if family.type == "counter":
            assert not family.name.endswith("_total")  # the client adds _total to samples
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
        if family.type == "histogram":
            assert family.name.endswith(("_seconds", "_bytes"))


def test_the_helpers_never_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> WorkerMetrics:
        raise OSError("metrics directory vanished")

    monkeypatch.setattr(metrics, "get_metrics", broken)
    metrics.observe_batch(BatchOutcome(indexed=1), committed=True, duration_s=1.0)
    metrics.observe_retry("other")
    metrics.observe_bulk_request(1, 0.1)
    metrics.observe_unreadable(entry("malformed", "message is not a batch"))
    with metrics.batch_in_progress():
        pass


def test_a_taken_port_is_logged_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert metrics.serve_worker_metrics(port, addr="127.0.0.1") is None
    assert "MEDLINE_WORKER_METRICS_PORT" in caplog.text


# --- prefork: multiprocess mode in a separate interpreter ----------------------------------------

_PREFORK_SCRIPT = r"""
import json, os, sys
from worker import metrics
from worker.jobs import BatchOutcome

base = sys.argv[1]
path = metrics.prepare_multiprocess(base)
metrics.get_metrics()  # as at worker_init: created in the main process, before the fork

children = []
for amount in (3, 5, 11):
    pid = os.fork()
    if pid == 0:  # a pool process
        metrics.observe_batch(BatchOutcome(indexed=amount), committed=True, duration_s=0.5)
        metrics.observe_bulk_request(100 * amount, 0.01)
        metrics.get_metrics().batches_in_progress.inc()  # dies mid-batch, never decrements
        os._exit(0)
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)

from prometheus_client import CollectorRegistry, generate_latest
registry = CollectorRegistry()
registry.register(metrics.LiveMultiProcessCollector(str(path)))
values = {}
for family in registry.collect():
    for sample in family.samples:
        if not sample.labels or sample.name.endswith("_count"):
            values[sample.name] = sample.value
print(json.dumps({"dir": str(path), "env": os.environ[metrics.MULTIPROC_ENV], "values": values}))
"""


def test_pool_processes_counts_add_up_and_dead_ones_leave_no_live_gauge(tmp_path: Path) -> None:
    result = json.loads(python_output(_PREFORK_SCRIPT, str(tmp_path)).strip().splitlines()[-1])
    assert Path(result["dir"]).parent == tmp_path  # a private directory under the one given
    assert result["env"] == result["dir"]
    found = result["values"]
    assert found["medline_records_indexed_total"] == 19
    assert found["medline_bulk_request_bytes_total"] == 1900
    assert found["medline_batch_duration_seconds_count"] == 3
    assert found["medline_batches_in_progress"] == 0  # all three processes are gone
    # The directory belongs to the process that made it and is removed when it exits.
    assert not Path(result["dir"]).exists()


# --- the exporter's gauges -----------------------------------------------------------------------


def snapshot(redis_up: bool = True, es_up: bool = True) -> Status:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    broker = BrokerStatus(url="redis://x", reachable=redis_up, ingest_queue="ingest")
    if redis_up:
        broker = broker.model_copy(
            update={
                "ingest_queue_depth": 12,
                "unacked": 3,
                "pending": 15,
                "pending_limit": 40,
                "dead_letters": {"malformed": 4, "rejected": 1, "exhausted": 0},
                "paused_reason": "too many dead letters",
            }
        )
    else:
        broker.error = "Redis at redis://x cannot be reached: refused"
    job = JobProgress(
        job_id="job-1",
        state="running",
        records=1000,
        done=250,
        indexed=240,
        dead_lettered=10,
        elapsed_s=60.0,
        rate=4.2,
        eta_s=180.0,
        expected_duration_s=240.0,
    )
    return Status(
        generated_at=now,
        broker=broker,
        throughput=Throughput(
            indexed_per_second={"1m": 4.0, "5m": 3.0, "15m": 1.0},
            done_per_second={"1m": 4.5, "5m": 3.5, "15m": 1.5},
        )
        if redis_up
        else None,
        running_jobs=[job] if redis_up else [],
        workers=WorkersStatus(
            reachable=redis_up,
            alive=[WorkerInfo(name="w1@h", concurrency=4), WorkerInfo(name="w2@h", concurrency=2)]
            if redis_up
            else [],
        ),
        elasticsearch=ElasticsearchStatus(
            url="http://es",
            reachable=es_up,
            cluster_health="yellow" if es_up else None,
            index="medline",
            index_documents=1234 if es_up else None,
            error=None if es_up else "Elasticsearch at http://es cannot be reached: refused",
        ),
    )


def scrape(status: Status) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(StatusCollector(lambda: status))
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_exporter_says_when_the_inbox_is_blocked() -> None:
    assert not any(name.startswith("medline_inbox") for name, _ in scrape(snapshot()))
    last = datetime(2026, 12, 7, 10, tzinfo=UTC)
    for inbox, blocked, awaiting in (
        (ScanReport(finished_at=last, waiting_on="a.xml.gz"), 0, 0),
        (ScanReport(finished_at=last, blocked="b.xml.gz", message="its MD5 is ..."), 1, 0),
        (ScanReport(finished_at=last, awaiting_md5="c.xml.gz"), 0, 1),
    ):
        found = scrape(snapshot().model_copy(update={"inbox": inbox}))
        assert found[("medline_inbox_blocked", ())] == blocked
        assert found[("medline_inbox_awaiting_md5", ())] == awaiting
        assert found[("medline_inbox_last_scan_timestamp_seconds", ())] == last.timestamp()


def test_the_exporter_reports_the_snapshot() -> None:
    found = scrape(snapshot())
    assert found[("medline_redis_up", ())] == 1
    assert found[("medline_ingest_queue_depth", ())] == 12
    assert found[("medline_batches_unacked", ())] == 3
    assert found[("medline_batches_pending", ())] == 15
    assert found[("medline_batches_pending_limit", ())] == 40
    assert found[("medline_dead_letter_queue_depth", (("queue", "malformed"),))] == 4
    assert found[("medline_dead_letter_queue_depth", (("queue", "exhausted"),))] == 0
    assert found[("medline_ingest_paused", ())] == 1
    key = (("kind", "indexed"), ("window", "5m"))
    assert found[("medline_throughput_records_per_second", key)] == 3.0
    assert found[("medline_workers_alive", ())] == 2
    assert found[("medline_worker_processes", ())] == 6
    assert found[("medline_jobs_running", ())] == 1
    job = (("job_id", "job-1"),)
    assert found[("medline_job_records", job)] == 1000
    assert found[("medline_job_records_done", job)] == 250
    assert found[("medline_job_eta_seconds", job)] == 180
    assert found[("medline_job_expected_duration_seconds", job)] == 240
    assert found[("medline_job_elapsed_seconds", job)] == 60
    assert found[("medline_elasticsearch_up", ())] == 1
    assert found[("medline_elasticsearch_cluster_health_status", ())] == 1
    assert found[("medline_index_documents", ())] == 1234
    assert ("medline_exporter_scrape_duration_seconds", ()) in found


def test_what_could_not_be_read_is_left_out_not_reported_as_zero() -> None:
    found = scrape(snapshot(redis_up=False, es_up=False))
    assert found[("medline_redis_up", ())] == 0
    assert found[("medline_elasticsearch_up", ())] == 0
    names = {name for name, _ in found}
    for absent in (
        "medline_ingest_queue_depth",
        "medline_dead_letter_queue_depth",
        "medline_throughput_records_per_second",
        "medline_workers_alive",
        "medline_elasticsearch_cluster_health_status",
        "medline_index_documents",
        "medline_jobs_running",
    ):
        assert absent not in names


def test_exporter_gauge_names_start_with_medline() -> None:
    for family in status_metrics(snapshot()):
        assert family.name.startswith("medline_")
        assert family.type == "gauge"


def test_directories_of_killed_workers_are_removed_at_the_next_start(tmp_path: Path) -> None:
    finished = subprocess.Popen(["true"])
    finished.wait()
    dead = tmp_path / f"medline-worker-{finished.pid}-abc"
    reused = tmp_path / f"medline-worker-{os.getpid()}-def"  # a restarted container's pid
    alive = tmp_path / f"medline-worker-{os.getppid()}-ghi"
    other = tmp_path / "something-else"
    for path in (dead, reused, alive, other):
        path.mkdir()
        (path / "counter_1.db").write_bytes(b"x")
    metrics._remove_stale_dirs(tmp_path)
    assert not dead.exists() and not reused.exists()
    assert alive.exists() and other.exists()
