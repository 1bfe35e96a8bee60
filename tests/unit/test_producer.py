"""The producer: argument resolution, batching by count and bytes, jobs, no-record inputs."""

from __future__ import annotations

import gzip
import hashlib
import io
from pathlib import Path

import fakeredis
import pytest

from schemas.messages import PackedBatch
from tests.records import medline_record, write_records
from worker.checksums import ChecksumMismatch
from worker.errors import ConfigurationError
from worker.jobs import BatchOutcome, JobStore
from worker.producer import enqueue, iter_batches, resolve_inputs
from worker.settings import Settings

PATTERNS = ["*.txt", "*.gz"]


@pytest.fixture
def settings() -> Settings:
    return Settings(key_prefix="t", batch_records=3, batch_bytes=1_000_000)


@pytest.fixture
def jobs(settings: Settings) -> JobStore:
    return JobStore(fakeredis.FakeRedis(), settings)


def test_resolve_files_dirs_globs_and_stdin(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("x")
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.gz").write_bytes(b"x")
    (tmp_path / "notes.md").write_text("x")
    (tmp_path / ".hidden.txt").write_text("x")
    assert resolve_inputs([str(tmp_path)], PATTERNS) == [
        str(tmp_path / "a.txt"),
        str(tmp_path / "b.txt"),
        str(tmp_path / "sub" / "c.gz"),
    ]
    assert resolve_inputs([str(tmp_path / "*.txt"), "-"], PATTERNS) == [
        str(tmp_path / "a.txt"),
        str(tmp_path / "b.txt"),
        "-",
    ]


def test_a_published_checksum_is_never_an_input(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "a.txt.md5").write_text("MD5(a.txt)= 9dd4e461268c8034f5c8564e155c67a6\n")
    assert resolve_inputs([str(tmp_path)], ["*"]) == [str(tmp_path / "a.txt")]
    assert resolve_inputs([str(tmp_path / "*")], PATTERNS) == [str(tmp_path / "a.txt")]


@pytest.mark.parametrize(
    ("arg", "message"),
    [("missing.txt", "no such file"), ("*.nothing", "no file matches")],
)
def test_resolve_refuses_what_names_nothing(tmp_path: Path, arg: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        resolve_inputs([str(tmp_path / arg)], PATTERNS)


def test_empty_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="holds no file"):
        resolve_inputs([str(tmp_path)], PATTERNS)


def records(n: int, size: int = 10) -> list[tuple[int, bytes]]:
    return [(i * 100, b"x" * size) for i in range(n)]


def test_batches_are_bounded_by_count_and_bytes() -> None:
    by_count = list(
        iter_batches(
            records(7), job_id="j", source="s", fmt="medline", max_records=3, max_bytes=10**6
        )
    )
    assert [len(b.records) for b in by_count] == [3, 3, 1]
    assert [b.batch_id for b in by_count] == ["j:000000", "j:000001", "j:000002"]
    by_bytes = list(
        iter_batches(
            records(7), job_id="j", source="s", fmt="medline", max_records=100, max_bytes=25
        )
    )
    assert [len(b.records) for b in by_bytes] == [2, 2, 2, 1]
    assert [r.offset for b in by_bytes for r in b.records] == [offset for offset, _ in records(7)]
    # Bytes, not characters: a record of 10 two-byte characters takes 20.
    wide = [(i * 100, "é".encode() * 10) for i in range(3)]
    by_utf8 = iter_batches(wide, job_id="j", source="s", fmt="medline", max_records=9, max_bytes=45)
    assert [len(b) for b in by_utf8] == [2, 1]


def test_enqueue_publishes_every_record_once_with_offsets(
    tmp_path: Path, settings: Settings, jobs: JobStore
) -> None:
    texts = [medline_record(100 + i) for i in range(8)]
    plain = write_records(tmp_path / "a.txt", texts[:5])
    packed = tmp_path / "b.txt.gz"
    packed.write_bytes(gzip.compress(("\n\n".join(texts[5:]) + "\n").encode()))
    sent: list[PackedBatch] = []

    result = enqueue([str(plain), str(packed)], settings=settings, jobs=jobs, publish=sent.append)

    assert result.records == 8
    assert result.batches == len(sent) == 3  # 3 + 2 records from a.txt, 3 from b.txt.gz
    assert {b.job_id for b in sent} == {result.job_id}
    assert len({b.batch_id for b in sent}) == 3
    raw = plain.read_bytes()
    for record in (r for b in sent if b.source == str(plain) for r in b.records):
        assert raw[record.offset :].startswith(record.text.strip().encode())
    summary = jobs.get(result.job_id)
    assert summary is not None
    assert (summary.records, summary.batches, summary.state) == (8, 3, "running")


def test_input_without_any_record_is_an_error_and_sends_nothing(
    tmp_path: Path, settings: Settings, jobs: JobStore
) -> None:
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\nthis is not medline\n")
    good = write_records(tmp_path / "good.txt", [medline_record(1)])
    sent: list[PackedBatch] = []

    result = enqueue([str(junk), str(good)], settings=settings, jobs=jobs, publish=sent.append)

    assert result.errors == [f"{junk}: holds no MEDLINE or PubMed record"]
    assert [b.source for b in sent] == [str(good)]
    assert result.records == 1


def test_junk_before_the_first_record_is_kept_not_dropped(
    tmp_path: Path, settings: Settings, jobs: JobStore
) -> None:
    path = tmp_path / "lead.txt"
    path.write_text("Exported by some tool\n\n" + medline_record(5) + "\n")
    sent: list[PackedBatch] = []
    result = enqueue([str(path)], settings=settings, jobs=jobs, publish=sent.append)
    texts = [r.text for b in sent for r in b.records]
    assert result.records == 2
    assert texts[0].strip() == "Exported by some tool"


def test_stdin_is_streamed(settings: Settings, jobs: JobStore) -> None:
    data = ("\n\n".join(medline_record(i) for i in range(4)) + "\n").encode()
    sent: list[PackedBatch] = []
    stdin = io.BufferedReader(io.BytesIO(data))  # type: ignore[arg-type]
    result = enqueue(["-"], settings=settings, jobs=jobs, publish=sent.append, stdin=stdin)
    assert result.records == 4
    assert {b.source for b in sent} == {"-"}


def test_enqueue_checks_each_file_against_its_md5_before_enqueuing_anything(
    tmp_path: Path, settings: Settings, jobs: JobStore
) -> None:
    good = write_records(tmp_path / "a.txt", [medline_record(1)])
    (tmp_path / "a.txt.md5").write_text(f"MD5(a.txt)= {hashlib.md5(good.read_bytes()).hexdigest()}")
    cut = write_records(tmp_path / "b.txt", [medline_record(2), medline_record(3)])
    (tmp_path / "b.txt.md5").write_text(f"MD5(b.txt)= {hashlib.md5(cut.read_bytes()).hexdigest()}")
    cut.write_bytes(cut.read_bytes()[:-40])
    plain = write_records(tmp_path / "c.txt", [medline_record(4)])  # no .md5: not checked
    sent: list = []
    with pytest.raises(ChecksumMismatch, match=r"b\.txt is not enqueued: its MD5 is"):
        enqueue(
            [str(good), str(cut), str(plain)],
            settings=settings,
            jobs=jobs,
            publish=sent.append,
            check_md5=True,
        )
    assert sent == [] and jobs.recent() == []
    # Unasked (the inbox checks before it enqueues), nothing is checked.
    result = enqueue([str(cut)], settings=settings, jobs=jobs, publish=sent.append)
    assert result.records == 2 and len(sent) == 1
    assert (
        enqueue(
            [str(good), str(plain)],
            settings=settings,
            jobs=jobs,
            publish=sent.append,
            check_md5=True,
        ).records
        == 2
    )


def test_enqueue_waits_while_the_queue_is_full_and_goes_on_as_batches_are_done(
    tmp_path: Path, settings: Settings, jobs: JobStore
) -> None:
    path = write_records(tmp_path / "a.txt", [medline_record(100 + i) for i in range(30)])
    sent: list[PackedBatch] = []
    most_queued = 0
    told: list[tuple[int, int]] = []

    def publish(batch: PackedBatch) -> None:
        nonlocal most_queued
        sent.append(batch)
        most_queued = max(most_queued, jobs.queued_batches())

    def worker_takes_one(_: float) -> None:
        # What a worker does: commit the oldest batch, which takes it out of the queue.
        done = next(b for b in sent if jobs.pending_batch(b.job_id, b.batch_id) is not None)
        jobs.commit_batch(done.job_id, done.batch_id, BatchOutcome(indexed=len(done.records)))

    result = enqueue(
        [str(path)],
        settings=settings,
        jobs=jobs,
        publish=publish,
        max_queued=2,
        on_wait=lambda queued, limit: told.append((queued, limit)),
        sleep=worker_takes_one,
    )

    assert (result.records, result.batches, len(sent)) == (30, 10, 10)
    assert most_queued == 2
    assert told == [(2, 2)]  # once, not for every batch that waited


def test_enqueue_without_a_limit_never_waits(
    tmp_path: Path, settings: Settings, jobs: JobStore
) -> None:
    path = write_records(tmp_path / "a.txt", [medline_record(100 + i) for i in range(30)])

    def no_sleep(_: float) -> None:
        raise AssertionError("waited without a limit")

    result = enqueue(
        [str(path)], settings=settings, jobs=jobs, publish=lambda b: None, sleep=no_sleep
    )
    assert jobs.queued_batches() == result.batches == 10
