"""The streaming MEDLINE parser: records and offsets, fields, collapsed records, robustness."""

from __future__ import annotations

import contextlib
import gzip
import io
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import DATA
from worker.documents import record_to_document
from worker.errors import MedlineParseError, RecordError
from worker.medline_tags import KNOWN_TAGS
from worker.medline_text import format_record, iter_raw_records, open_source, parse_fields


def records_of(data: bytes, chunk_size: int = 1 << 20) -> list[tuple[int, str]]:
    return [(r.offset, r.text) for r in iter_raw_records(io.BytesIO(data), chunk_size)]


def test_collapsed_seed_gives_the_same_document_as_its_line_form() -> None:
    collapsed = (DATA / "seed-medline-collapsed.txt").read_text()
    lines = (DATA / "seed-medline.txt").read_text()
    assert "\n" not in collapsed.strip()
    assert record_to_document(collapsed) == record_to_document(lines)


def test_abstract_text_that_looks_like_a_tag_is_not_one() -> None:
    collapsed = (
        "PMID- 1 TI - A title. AB - Cells were IVIG - treated and type B - cells grew. LA - eng"
    )
    fields = parse_fields(collapsed)
    assert fields == [
        ("PMID", "1"),
        ("TI", "A title."),
        ("AB", "Cells were IVIG - treated and type B - cells grew."),
        ("LA", "eng"),
    ]


def test_continuation_lines_join_with_one_space_and_repeats_keep_order() -> None:
    text = "PMID- 7\nTI  - A long\n      title\n      here.\nAU  - Doe J\nAU  - Roe R\n"
    assert parse_fields(text) == [
        ("PMID", "7"),
        ("TI", "A long title here."),
        ("AU", "Doe J"),
        ("AU", "Roe R"),
    ]


@pytest.mark.parametrize("chunk_size", [7, 64, 1 << 20])
def test_records_and_byte_offsets_across_shapes(chunk_size: int) -> None:
    data = (
        "header line\n\n"
        "PMID- 1\nTI  - One.\n\n\n"
        "PMID- 2 TI - Two.\n"  # collapsed, own line, no blank line
        "PMID- 3 TI - Three. PMID- 4 TI - Four é.\n"  # two on one line
    ).encode()
    found = records_of(data, chunk_size)
    assert [text.split()[1] if text.startswith("PMID") else text for _, text in found] == [
        "header line",
        "1",
        "2",
        "3",
        "4",
    ]
    for offset, text in found:
        assert data[offset:].startswith(text.encode())


def test_gzip_is_recognised_by_content(tmp_path: Path) -> None:
    plain = (DATA / "sample.medline").read_bytes()
    packed = tmp_path / "no-gz-suffix.txt"
    packed.write_bytes(gzip.compress(plain))
    with open_source(packed) as stream:
        from_gz = [(r.offset, r.text) for r in iter_raw_records(stream)]
    assert from_gz == records_of(plain)
    assert len(from_gz) == 25


def test_a_five_megabyte_single_line_record_parses() -> None:
    abstract = " ".join(["word"] * 1_000_000)
    text = f"PMID- 9 TI - Huge. AB - {abstract} LA - eng"
    assert len(text) > 5_000_000
    fields = parse_fields(text)
    assert [tag for tag, _ in fields] == ["PMID", "TI", "AB", "LA"]
    assert len(fields[2][1]) == len(abstract)


@pytest.mark.parametrize(
    "text",
    ["", "   ", "hello world", "TI  - no pmid first\nPMID- 1", "garbage PMID- x"],
)
def test_non_medline_text_is_a_parse_error(text: str) -> None:
    with pytest.raises(MedlineParseError):
        parse_fields(text)


_tags = st.sampled_from(sorted(KNOWN_TAGS - {"PMID"}))
_words = st.text(
    alphabet=st.characters(
        whitelist_categories=("Lu", "Ll", "Nd"), whitelist_characters="()[],.;:/*'"
    ),
    min_size=1,
    max_size=12,
)
_values = st.lists(_words, min_size=1, max_size=30).map(" ".join)


@given(
    pmid=st.integers(min_value=1, max_value=10**9),
    fields=st.lists(st.tuples(_tags, _values), min_size=1, max_size=25),
)
def test_print_and_parse_round_trip(pmid: int, fields: list[tuple[str, str]]) -> None:
    record = [("PMID", str(pmid)), *fields]
    assert parse_fields(format_record(record)) == record
    # The collapsed form gives the same fields too.
    assert parse_fields(" ".join(format_record(record).split())) == record


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_raise_nothing_but_record_errors(data: bytes) -> None:
    for record in iter_raw_records(io.BytesIO(data), chunk_size=64):
        with contextlib.suppress(RecordError):
            record_to_document(record.text)


@given(st.text(max_size=500))
def test_arbitrary_text_after_a_pmid_raises_nothing_but_record_errors(text: str) -> None:
    with contextlib.suppress(RecordError):
        record_to_document("PMID- 1\n" + text)
