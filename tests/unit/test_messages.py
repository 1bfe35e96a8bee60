"""Batch JSON: the fast path (orjson) writes and reads the same documents as pydantic's; a
packed batch (JSON head, then the records' text) holds exactly the batch it was packed from."""

from __future__ import annotations

from collections.abc import Callable

import lz4.frame
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.messages import BatchMessage, PackedBatch, RawRecord
from tests.helpers import REPO

texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=300)
batches = st.builds(
    BatchMessage,
    job_id=st.text(min_size=1, max_size=20),
    batch_id=st.text(min_size=1, max_size=20),
    source=st.text(max_size=40),
    format=st.sampled_from(["medline", "pubmed-xml"]),
    records=st.lists(st.builds(RawRecord, offset=st.integers(0, 2**40), text=texts), max_size=5),
    replay_of=st.none() | st.text(max_size=10),
)


@given(batches)
def test_to_json_writes_what_model_dump_json_writes(batch: BatchMessage) -> None:
    assert orjson.loads(batch.to_json()) == orjson.loads(batch.model_dump_json())


@given(batches)
def test_from_json_reads_both_writers_back(batch: BatchMessage) -> None:
    assert BatchMessage.from_json(batch.to_json()) == batch
    assert BatchMessage.from_json(batch.model_dump_json()) == batch


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b'{"job_id": "j", "batch_id": "b", "source": "s"',
        b'{"job_id": "j", "batch_id": "b", "source": "s", "records": [{"offset": -1, "text": ""}]}',
        b'{"job_id": "j", "batch_id": "b", "source": "s", "records": [], "format": "csv"}',
        b"[]",
    ],
)
def test_from_json_refuses_what_is_not_a_batch(data: bytes) -> None:
    with pytest.raises(ValidationError):
        BatchMessage.from_json(data)


@given(batches)
def test_a_packed_batch_unpacks_to_the_batch_it_was_packed_from(batch: BatchMessage) -> None:
    packed = PackedBatch.unpack(PackedBatch.from_message(batch).data)
    assert packed.to_message() == batch
    assert len(packed) == len(batch.records)
    assert [packed.raw_record(i) for i in range(len(packed))] == batch.records


@given(batches)
def test_a_compressed_batch_unpacks_to_the_batch_it_was_packed_from(batch: BatchMessage) -> None:
    packed = PackedBatch.from_message(batch, compression="lz4")
    stored = packed.stored
    head, compressed_text = stored.split(b"\n", 1)
    assert orjson.loads(head)["compression"] == "lz4"
    assert lz4.frame.decompress(compressed_text) == b"".join(r.text.encode() for r in batch.records)
    unpacked = PackedBatch.unpack(stored)
    assert unpacked.to_message() == batch
    assert unpacked.data == packed.data
    assert [packed.raw_record(i) for i in range(len(packed))] == batch.records
    assert [unpacked.raw_record(i) for i in range(len(unpacked))] == batch.records


def test_an_uncompressed_batch_is_stored_as_packed_and_says_nothing_of_compression() -> None:
    packed = PackedBatch.from_message(
        BatchMessage(job_id="j", batch_id="b", source="s", records=[])
    )
    assert packed.stored is packed.data
    assert "compression" not in orjson.loads(packed.stored.split(b"\n", 1)[0])


def test_compression_stores_real_medline_text_in_about_half_the_bytes() -> None:
    # 25 real citations; a batch of 1,000 repeats more (journals, MeSH) and compresses more.
    records = (REPO / "tests" / "data" / "sample.medline").read_bytes().split(b"\n\n")
    packed = PackedBatch.pack(
        job_id="j",
        batch_id="b",
        source="s",
        format="medline",
        offsets=list(range(len(records))),
        texts=records,
        compression="lz4",
    )
    assert len(records) >= 25
    assert len(packed.stored) < 0.55 * len(packed.data)


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda body: body[: len(body) // 2], "compression"),
        (lambda body: b"not an lz4 frame", "compression"),
        (lambda body: lz4.frame.compress(lz4.frame.decompress(body) + b"x"), "sizes"),
    ],
)
def test_a_damaged_compressed_batch_is_refused_with_the_reason(
    damage: Callable[[bytes], bytes], problem: str
) -> None:
    records = [RawRecord(offset=0, text="PMID- 1\nTI  - A title.")]
    stored = PackedBatch.from_message(
        BatchMessage(job_id="j", batch_id="b", source="s", records=records), compression="lz4"
    )
    head, body = stored.stored.split(b"\n", 1)
    with pytest.raises(ValidationError, match=problem):
        PackedBatch.unpack(head + b"\n" + damage(body))


@given(batches, st.integers(0, 5), st.integers(0, 5))
def test_spans_are_where_each_record_text_lies(batch: BatchMessage, start: int, stop: int) -> None:
    packed = PackedBatch.from_message(batch)
    spans = list(packed.spans(start, stop))
    expected = batch.records[start:stop]
    assert [offset for offset, _, _ in spans] == [r.offset for r in expected]
    assert [packed.data[b:e].decode() for _, b, e in spans] == [r.text for r in expected]


def test_a_packed_batch_head_is_one_json_line_before_the_text() -> None:
    batch = BatchMessage(
        job_id="j",
        batch_id="j:1",
        source="s",
        records=[
            RawRecord(offset=0, text="PMID- 1\nAU  - Sørensen P"),
            RawRecord(offset=9, text="x"),
        ],
    )
    head, text = PackedBatch.from_message(batch).data.split(b"\n", 1)
    assert orjson.loads(head)["sizes"] == [25, 1]
    assert text == "PMID- 1\nAU  - Sørensen Px".encode()


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b'{"job_id":"j","batch_id":"b","source":"s","offsets":[0],"sizes":[3]}\nab', "sizes"),
        (b'{"job_id":"j","batch_id":"b","source":"s","offsets":[0,1],"sizes":[1]}\na', "sizes"),
        (b'{"job_id":"j","batch_id":"b","source":"s","offsets":[-1],"sizes":[1]}\na', "offsets"),
        (b'{"job_id":"j","source":"s","offsets":[],"sizes":[]}\n', "batch_id"),
        (b"not json\nPMID- 1", "json"),
    ],
)
def test_unpack_refuses_what_is_not_a_packed_batch(data: bytes, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        PackedBatch.unpack(data)
