"""The streaming MEDLINE parser: records and byte offsets, fields, collapsed and mixed records,
robustness against any input."""

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
from worker.medline_tags import KNOWN_TAGS, MEDLINE_TAGS
from worker.medline_text import (
    _fields_slowly,
    format_record,
    iter_raw_records,
    iter_record_bytes,
    open_source,
    parse_fields,
)

#: Each test runs with the compiled parser and with the Python one.
pytestmark = pytest.mark.usefixtures("parser_mode")


def records_of(data: bytes, chunk_size: int = 1 << 20, **kwargs: int) -> list[tuple[int, str]]:
    stream = io.BytesIO(data)
    return [(r.offset, r.text) for r in iter_raw_records(stream, chunk_size, **kwargs)]


# --- the seed: collapsed and line forms ----------------------------------------------------


def test_collapsed_seed_gives_the_same_document_as_its_line_form() -> None:
    collapsed = (DATA / "seed-medline-collapsed.txt").read_text()
    lines = (DATA / "seed-medline.txt").read_text()
    assert "\n" not in collapsed.strip() and "\n      " in lines
    assert parse_fields(collapsed) == parse_fields(lines)
    from_collapsed, from_lines = record_to_document(collapsed), record_to_document(lines)
    assert from_collapsed == from_lines
    assert from_collapsed.index_body() == from_lines.index_body()
    assert from_lines.pmid == "12559498" and len(from_lines.mesh) == 6


def test_the_seed_in_the_sample_file_is_the_seed() -> None:
    with open_source(DATA / "sample.medline") as stream:
        first = next(iter_raw_records(stream))
    assert parse_fields(first.text) == parse_fields((DATA / "seed-medline.txt").read_text())


# --- fields ---------------------------------------------------------------------------------


def test_continuation_lines_join_with_one_space_and_repeats_keep_order() -> None:
    text = (
        "PMID- 7\nTI  - A long\n      title\n      here.\nAU  - Doe J\nAU  - Roe R\nAU  - Doe J\n"
    )
    assert parse_fields(text) == [
        ("PMID", "7"),
        ("TI", "A long title here."),
        ("AU", "Doe J"),
        ("AU", "Roe R"),
        ("AU", "Doe J"),
    ]


def test_whitespace_inside_values_is_normalised_in_every_form() -> None:
    expected = [("PMID", "7"), ("TI", "A b c."), ("AB", "d e")]
    assert parse_fields("PMID- 7\nTI  - A  b\n        c.\nAB  -  d \t e  ") == expected
    assert parse_fields("PMID- 7\r\nTI  - A b\r\n      c.\r\nAB  - d e\r\n") == expected
    assert parse_fields("PMID- 7 TI - A  b c. AB - d\te") == expected


@pytest.mark.parametrize(
    "text",
    [
        "PMID- 1\nAB\n      - 000000",  # "AB" alone is text; so is the line after it
        "PMID- 1\nAB\n        - 000000",
        "PMID- 1\nAB \n       -  000000",
    ],
)
def test_joined_lines_never_make_a_tag_line(text: str) -> None:
    assert parse_fields(text) == [("PMID", "1 AB - 000000")]


def test_printing_keeps_no_break_spaces_and_wraps_long_values() -> None:
    fields = [("PMID", "1"), ("AU", "van\u00a0der Berg J"), ("AB", " ".join(["word"] * 50))]
    printed = format_record(fields)
    assert "van\u00a0der" in printed
    assert max(len(line) for line in printed.splitlines()) <= 80
    assert sum(line.startswith("      ") for line in printed.splitlines()) == 3
    assert parse_fields(printed) == fields


def test_an_empty_value_and_an_unknown_tag_in_a_line_record() -> None:
    text = "PMID- 7\nTI  -\nXYZ - new tag\nAB  - x"
    assert parse_fields(text) == [("PMID", "7"), ("TI", ""), ("XYZ", "new tag"), ("AB", "x")]


def test_collapsed_text_splits_only_at_known_padded_tags() -> None:
    # Shaped like tags but not ones: unknown (IVIG, DNA, HIVX), one letter, a 4-letter tag
    # with a space, inside a word, after a bracket.
    abstract = (
        "Cells were IVIG - treated, type B - cells grew, DNA - binding HIVX- 1 rose, "
        "AUID - no, X(AB - no), ABCDE - no."
    )
    collapsed = f"PMID- 1 TI - A title. AB - {abstract} LA - eng AUID- ORCID: 1"
    assert parse_fields(collapsed) == [
        ("PMID", "1"),
        ("TI", "A title."),
        ("AB", abstract),
        ("LA", "eng"),
        ("AUID", "ORCID: 1"),
    ]


def test_a_wrapped_line_that_lost_its_indent_continues_its_field() -> None:
    text = "PMID- 1\nTI  - A title that was\nwrapped by an editor.\nAB  - An abstract.\nLA  - eng"
    assert parse_fields(text) == [
        ("PMID", "1"),
        ("TI", "A title that was wrapped by an editor."),
        ("AB", "An abstract."),
        ("LA", "eng"),
    ]


def test_collapsed_text_wrapped_at_a_width_is_split_at_known_tags() -> None:
    collapsed = (
        "PMID- 1 OWN - NLM TI - Cells and IVIG - treated mice. AB - More text here. LA - eng"
    )
    wrapped = "\n".join(collapsed[i : i + 20] for i in range(0, len(collapsed), 20))
    # Words cut by the wrap are joined with a space; tags stay intact unless cut themselves.
    fields = parse_fields(wrapped)
    assert [tag for tag, _ in fields] == ["PMID", "OWN", "TI", "AB", "LA"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n\t ",
        "hello world",
        "TI  - no pmid first\nPMID- 1",
        "garbage PMID- 1 TI - x",
        "IVIG - treated",
        "\x00\x01 binary",
    ],
)
def test_non_medline_text_is_a_parse_error(text: str) -> None:
    with pytest.raises(MedlineParseError):
        parse_fields(text)


def test_a_five_megabyte_single_line_record_parses() -> None:
    abstract = " ".join(["word"] * 1_000_000)
    text = f"PMID- 9 TI - Huge. AB - {abstract} IVIG - not a tag LA - eng"
    assert len(text) > 5_000_000 and "\n" not in text
    fields = parse_fields(text)
    assert [tag for tag, _ in fields] == ["PMID", "TI", "AB", "LA"]
    assert fields[2][1] == abstract + " IVIG - not a tag"


# --- the tag set ----------------------------------------------------------------------------


def test_the_tag_set_has_nlms_tags_with_their_names() -> None:
    for tag in (
        "AB CI AD IRAD AID AU AUID FAU BTI CTI CN CRDT DCOM DA LR DEP DP EN ED FED EDAT GS GN GR "
        "IR FIR ISBN IS IP TA JT LA LID MID MHDA MH JID RF OAB OABL OCI OID OT OTO OWN PG PS FPS "
        "PL PHST PST PT PUBM PMC PMCR PMID RN NM SI SO SFM STAT SB TI TT VI VTI CON CIN EIN EFR "
        "CRI CRF ECI ECF RPI RPF RIN ROF UIN UOF SPIN ORI DRIN DDIN COIS PRIN PROF RRI RRF"
    ).split():
        assert tag in KNOWN_TAGS, tag
    assert MEDLINE_TAGS["EIN"] == "Erratum In" and MEDLINE_TAGS["ECI"] == "Expression of Concern In"
    assert all(2 <= len(tag) <= 4 and tag.isalpha() and tag.isupper() for tag in KNOWN_TAGS)


# --- splitting a stream into records ---------------------------------------------------------

_MIXED_FILE = (
    "header line\n\n"
    "PMID- 1\nTI  - One.\nAB  - see PMID- 77 in the text\n      PMID- 78 too\n \t\n\n"
    "PMID- 2 TI - Two.\n"  # collapsed, own line, no blank line after it
    "PMID- 3 TI - Three. PMID- 4 TI - Four \u00e9.\n"  # two on one line
    "\n\nPMID- 5\r\nTI  - Five.\r\n\r\ntrailer\n"
).encode()


@pytest.mark.parametrize("chunk_size", [1, 2, 7, 64, 1 << 20])
def test_records_and_byte_offsets_across_shapes(chunk_size: int) -> None:
    found = records_of(_MIXED_FILE, chunk_size)
    assert [text.split()[1] if text.startswith("PMID") else text for _, text in found] == [
        "header line",
        "1",
        "2",
        "3",
        "4",
        "5",
        "trailer",
    ]
    for offset, text in found:
        assert _MIXED_FILE[offset:].startswith(text.encode()), (offset, text)
    assert "PMID- 77" in found[1][1] and "PMID- 78" in found[1][1]  # text, not records


def test_whitespace_alone_is_not_a_record_and_a_byte_order_mark_is_skipped() -> None:
    assert records_of(b" \n\n\t\n") == []
    assert records_of("\ufeffPMID- 5\nTI  - x\n".encode(), 2) == [(3, "PMID- 5\nTI  - x")]


def test_invalid_utf8_is_replaced_not_an_error() -> None:
    ((offset, text),) = records_of(b"PMID- 5\nTI  - caf\xe9\n")
    assert offset == 0 and text == "PMID- 5\nTI  - caf\ufffd"


def test_a_record_with_no_end_is_yielded_in_pieces_with_every_byte_kept() -> None:
    data = b"x" * 10_000
    pieces = records_of(data, 512, max_record_bytes=1_000)
    assert len(pieces) > 5
    assert "".join(text for _, text in pieces) == data.decode()
    assert [offset for offset, _ in pieces] == sorted({offset for offset, _ in pieces})


@given(
    records=st.lists(st.integers(min_value=1, max_value=10**8), min_size=1, max_size=8),
    separators=st.lists(st.sampled_from(["\n", "\n\n", "\n\n\n", "\r\n\r\n", " "]), min_size=8),
    chunk_size=st.integers(min_value=1, max_value=300),
)
def test_any_read_size_gives_the_same_records_and_offsets(
    records: list[int], separators: list[str], chunk_size: int
) -> None:
    parts = []
    for pmid, separator in zip(records, separators, strict=False):
        body = (
            f"PMID- {pmid}\nTI  - Title {pmid}\n      continued."
            if separator != " "
            else (f"PMID- {pmid} TI - Title {pmid} continued.")
        )
        parts.append(body + separator)
    data = "".join(parts).encode()
    expected = records_of(data)
    assert records_of(data, chunk_size) == expected
    assert [text.split()[1] for _, text in expected] == [str(p) for p in records]
    for offset, text in expected:
        assert data[offset:].startswith(text.encode())


def test_gzip_is_recognised_by_content_not_name(tmp_path: Path) -> None:
    plain = (DATA / "sample.medline").read_bytes()
    packed = tmp_path / "no-gz-suffix.txt"
    packed.write_bytes(gzip.compress(plain))
    not_packed = tmp_path / "plain.gz"
    not_packed.write_bytes(plain)
    with open_source(packed) as stream:
        from_gz = [(r.offset, r.text) for r in iter_raw_records(stream, 4096)]
    with open_source(not_packed) as stream:
        from_plain = [(r.offset, r.text) for r in iter_raw_records(stream)]
    assert from_gz == from_plain == records_of(plain)
    assert len(from_gz) == 25


# --- printing and parsing -------------------------------------------------------------------

_tags = st.sampled_from(sorted(KNOWN_TAGS - {"PMID"}))
_words = st.text(
    alphabet=st.characters(
        whitelist_categories=("Lu", "Ll", "Nd", "Lo"), whitelist_characters="()[],.;:/*'-&"
    ),
    min_size=1,
    max_size=15,
)
_values = st.lists(_words, min_size=0, max_size=40).map(" ".join)
# Collapsed text has no structure left but its tags: a value holding "XX - " or "ABCD-" reads
# as a tag there (an ambiguity of the format itself), so these values carry no dashes.
_undashed_values = _values.map(lambda value: " ".join(value.replace("-", "").split()))


@given(
    pmid=st.integers(min_value=1, max_value=10**9),
    fields=st.lists(st.tuples(_tags, _values), min_size=0, max_size=25),
    width=st.integers(min_value=20, max_value=120),
)
def test_print_and_parse_round_trip(pmid: int, fields: list[tuple[str, str]], width: int) -> None:
    record = [("PMID", str(pmid)), *fields]
    printed = format_record(record, width)
    assert parse_fields(printed) == record
    assert all(len(line) <= width or " " not in line[6:] for line in printed.splitlines())


@given(
    pmid=st.integers(min_value=1, max_value=10**9),
    fields=st.lists(st.tuples(_tags, _undashed_values), max_size=25),
)
def test_the_collapsed_form_parses_to_the_same_fields(
    pmid: int, fields: list[tuple[str, str]]
) -> None:
    record = [("PMID", str(pmid)), *fields]
    assert parse_fields(" ".join(format_record(record).split())) == record


@given(
    pmid=st.integers(min_value=1, max_value=10**9),
    fields=st.lists(st.tuples(_tags, _values), max_size=20),
    noise=st.lists(st.sampled_from(["  ", " ", "\t", "\r", "\n\n", "\n       "]), max_size=5),
)
def test_the_fast_path_agrees_with_the_slow_one(
    pmid: int, fields: list[tuple[str, str]], noise: list[str]
) -> None:
    printed = format_record([("PMID", str(pmid)), *fields])
    for i, extra in enumerate(noise):  # whitespace where real files have it
        at = (len(printed) * (i + 1)) // (len(noise) + 1)
        printed = printed[:at] + extra + printed[at:]
    try:
        slow = _fields_slowly(printed.strip())
    except MedlineParseError:
        with pytest.raises(MedlineParseError):
            parse_fields(printed)
        return
    if slow[0][0] == "PMID":
        assert parse_fields(printed) == slow


# --- robustness -----------------------------------------------------------------------------


@given(st.binary(max_size=3000), st.integers(min_value=1, max_value=100))
def test_arbitrary_bytes_raise_nothing_but_record_errors(data: bytes, chunk_size: int) -> None:
    previous = -1
    for record in iter_raw_records(io.BytesIO(data), chunk_size):
        assert previous < record.offset < len(data)
        previous = record.offset
        with contextlib.suppress(RecordError):
            record_to_document(record.text)


@given(st.text(max_size=800))
def test_arbitrary_text_after_a_pmid_raises_nothing_but_record_errors(text: str) -> None:
    for prefix in ("PMID- 1\n", "PMID- 1 ", "PMID- 1\nTI  - x\n"):
        with contextlib.suppress(RecordError):
            record_to_document(prefix + text)


@given(st.lists(st.sampled_from([*sorted(KNOWN_TAGS), "PMID- 1", "- ", " ", "\n", "x"])))
def test_tag_soup_raises_nothing_but_record_errors(parts: list[str]) -> None:
    text = " ".join(parts)
    with contextlib.suppress(RecordError):
        record_to_document("PMID- 1 " + text)
    with contextlib.suppress(RecordError):
        record_to_document("PMID- 1\n" + "\n".join(parts))


def test_records_as_bytes_are_the_records_text_encoded() -> None:
    data = (DATA / "sample.medline").read_bytes() + b"\n\nPMID- 9\nTI  - bad \xff\xfe x\n"
    records = list(iter_raw_records(io.BufferedReader(io.BytesIO(data)), chunk_size=4096))
    as_bytes = list(iter_record_bytes(io.BufferedReader(io.BytesIO(data)), chunk_size=4096))
    assert len(records) > 20
    assert as_bytes == [(r.offset, r.text.encode()) for r in records]
    assert as_bytes[-1][1] == "PMID- 9\nTI  - bad \ufffd\ufffd x".encode()
