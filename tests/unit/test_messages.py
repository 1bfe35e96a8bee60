"""Batch JSON: the fast path (orjson) writes and reads the same documents as pydantic's."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.messages import BatchMessage, RawRecord

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
