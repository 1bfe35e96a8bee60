"""The compiled parser (worker._native) against the Python reference: the same fields, the
same index body, the same errors, on records written for the tests, generated corpora,
hypothesis-generated records and arbitrary text."""

from __future__ import annotations

import copy
import io
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from schemas.document import PMID_VERSION_MAX
from tests.benchmarks.corpus import write_corpus
from tests.helpers import DATA
from tests.pubmed_records import medline_citation, pubmed_article, pubmed_book_article
from tests.unit.conftest import require_native
from tests.unit.test_dates import PUBLICATION_DATES
from tests.unit.test_documents import RICH
from worker import documents, native, pubmed_xml
from worker.documents import SIMPLE_TAGS, _fields_to_body
from worker.errors import ConfigurationError, MedlineParseError, RecordError
from worker.medline_tags import KNOWN_TAGS
from worker.medline_text import (
    QUOTE_LIMIT,
    _Splitter,
    format_record,
    iter_raw_records,
    open_source,
    parse_fields,
)


def compiled_parser() -> Any:
    """The compiled parser (the test is skipped, or fails where it is required, without it)."""
    require_native()
    return native.parser(sorted(KNOWN_TAGS), SIMPLE_TAGS, QUOTE_LIMIT)


@pytest.fixture(scope="module")
def compiled() -> Any:
    return compiled_parser()


def python_fields(text: str) -> list[tuple[str, str]] | str:
    """The reference's fields, or its error message."""
    try:
        return parse_fields(text)
    except MedlineParseError as exc:
        return str(exc)


def compiled_fields(parser: Any, text: str) -> list[tuple[str, str]] | str:
    try:
        return parser.fields(text)
    except native.ParseError as exc:
        return str(documents.parse_error(*exc.args))


def assert_same_body(parser: Any, fields: list[tuple[str, str]]) -> None:
    expected = _fields_to_body(fields)
    assert orjson.loads(parser.fields_body_json(fields)) == expected


def test_auto_uses_the_compiled_code_when_it_is_built() -> None:
    require_native()
    assert native.wanted("auto") and native.wanted("native")
    assert not native.wanted("python")


def test_insisting_on_the_compiled_code_without_it_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(native, "_native", None)
    assert not native.wanted("auto")
    with pytest.raises(ConfigurationError, match="MEDLINE_PARSER=native but the compiled"):
        native.wanted("native")


def test_the_files_of_the_tests_give_the_same_fields_and_bodies(compiled: Any) -> None:
    texts = [RICH]
    for path in sorted(DATA.glob("*.medline")) + sorted(DATA.glob("seed-*.txt")):
        with open_source(path) as stream:
            texts += [record.text for record in iter_raw_records(stream)]
    assert len(texts) > 30
    for text in texts:
        fields = python_fields(text)
        assert compiled_fields(compiled, text) == fields
        assert isinstance(fields, list)
        assert orjson.loads(compiled.body_json(text)) == _fields_to_body(fields)


def test_a_generated_corpus_gives_the_same_bodies(compiled: Any, tmp_path: Path) -> None:
    path = write_corpus(tmp_path / "corpus.txt", 2000, seed=7)
    with open_source(path) as stream:
        for record in iter_raw_records(stream):
            fields = parse_fields(record.text)
            assert orjson.loads(compiled.body_json(record.text)) == _fields_to_body(fields)


def test_a_record_read_in_place_gives_the_body_of_its_text(compiled: Any, tmp_path: Path) -> None:
    path = write_corpus(tmp_path / "corpus.txt", 300, seed=11)
    with open_source(path) as stream:
        texts = [record.text for record in iter_raw_records(stream)]
    assert any(not text.isascii() for text in texts)
    data = b"head\n" + b"".join(text.encode() for text in texts)
    begin = 5
    for text in texts:
        end = begin + len(text.encode())
        assert compiled.body_json_at(data, begin, end) == compiled.body_json(text)
        begin = end


def test_a_record_read_in_place_has_invalid_bytes_replaced(compiled: Any) -> None:
    data = b"xxPMID- 1\nTI  - caf\xe9 au lait\nDP  - 2003"
    assert compiled.body_json_at(data, 2, len(data)) == compiled.body_json(
        data[2:].decode("utf-8", "replace")
    )
    with pytest.raises(ValueError, match=r"no bytes 2\.\.99"):
        compiled.body_json_at(data, 2, 99)
    with pytest.raises(native.ParseError):
        compiled.body_json_at(b"not a record", 0, 12)


_TAGS = st.sampled_from([*sorted(KNOWN_TAGS), "XYZ", "AB", "MH", "AD", "FAU", "AU", "PHST"])
_WORDS = st.text(
    alphabet=st.characters(
        whitelist_categories=("Lu", "Ll", "Nd", "Lo", "Zs"), whitelist_characters="()[],.;:/*'-&"
    ),
    max_size=15,
)
# Values the mapping reads something into: dates of every shape, typed ids, MeSH, grants.
_SHAPED = st.sampled_from(
    [raw for raw, _, _ in PUBLICATION_DATES]
    + [
        "20030402",
        "20030230",
        "00000101",
        " 20040229",
        "2003/02/01 04:00",
        "2003/02/01",
        "2003/02/01 24:00",
        "2003/02/01 04:00 [pubmed]",
        "2003/02/01 [ ]",
        "[x]",
        "10.1/x [doi]",
        "x []",
        "S0 [pii]",
        "a [doi] [pii]",
        "0 (Name)",
        "EC 3.4 (A (B))",
        "1471-2474 (Electronic)",
        "(Print)",
        "Humans",
        "*Brain/*pathology/",
        "/a",
        "a//b",
        "R01/NS/NINDS NIH HHS/United States",
        "G06/1/MRC_/Council/UK",
        "a / b /  / d",
        "2003 May 0",
        "2003 mAy 31.",
        "2003 0007",
        "Spring",
        "1999 13",
        "\u00a02003\u00a0Feb",
        "2003\u2003Feb 3",
        "2003\x1cMar",
        "Winter-2003",
    ]
)
_VALUES = st.one_of(_WORDS.map(lambda v: " ".join(v.split())), _SHAPED)


@given(st.lists(st.tuples(_TAGS, _VALUES), max_size=40), st.integers(1, 10**9))
def test_any_fields_map_to_the_same_body(fields: list[tuple[str, str]], pmid: int) -> None:
    parser = compiled_parser()
    assert_same_body(parser, [("PMID", str(pmid)), *fields])
    assert_same_body(parser, fields)


@given(
    st.lists(st.tuples(_TAGS, _VALUES), max_size=25),
    st.integers(1, 10**9),
    st.lists(
        st.sampled_from(["  ", " ", "\t", "\r", "\r\n", "\n\n", "\n       ", "\n- "]), max_size=5
    ),
    st.booleans(),
)
def test_printed_records_give_the_same_fields(
    fields: list[tuple[str, str]], pmid: int, noise: list[str], collapse: bool
) -> None:
    parser = compiled_parser()
    printed = format_record([("PMID", str(pmid)), *fields])
    for i, extra in enumerate(noise):  # whitespace where real files have it
        at = (len(printed) * (i + 1)) // (len(noise) + 1)
        printed = printed[:at] + extra + printed[at:]
    if collapse:
        printed = " ".join(printed.split())
    assert compiled_fields(parser, printed) == python_fields(printed)


@given(st.text(max_size=600))
def test_arbitrary_text_gives_the_same_fields_or_the_same_error(text: str) -> None:
    parser = compiled_parser()
    for candidate in (text, "PMID- 1\n" + text, "PMID- 1 " + text, "PMID- 1 TI - " + text):
        assert compiled_fields(parser, candidate) == python_fields(candidate)


@given(st.lists(st.sampled_from([*sorted(KNOWN_TAGS), "PMID- 1", "-", "- ", " ", "\n", "x", "AB"])))
def test_tag_soup_gives_the_same_fields_or_the_same_error(parts: list[str]) -> None:
    parser = compiled_parser()
    for candidate in ("PMID- 1 " + " ".join(parts), "PMID- 1\n" + "\n".join(parts), "".join(parts)):
        assert compiled_fields(parser, candidate) == python_fields(candidate)


# --- splitting a stream into records ----------------------------------------------------------


def python_records(data: bytes, chunk_size: int, max_record_bytes: int) -> list[tuple[int, str]]:
    splitter = _Splitter(max(max_record_bytes, 16))
    return [(r.offset, r.text) for r in splitter.records(io.BytesIO(data), chunk_size)]


def compiled_records(
    data: bytes, chunk_size: int, max_record_bytes: int, as_bytes: bool = False
) -> list[tuple[int, Any]]:
    require_native()
    splitter = native.record_splitter(max_record_bytes, as_bytes)
    found = []
    for at in range(0, len(data), chunk_size):
        found += splitter.feed(data[at : at + chunk_size])
    return found + splitter.finish()


def encoded(records: list[tuple[int, str]]) -> list[tuple[int, bytes]]:
    """What the splitter gives as bytes: each text encoded, as a packed batch stores it."""
    return [(offset, text.encode()) for offset, text in records]


def test_records_as_bytes_are_their_text_encoded_with_invalid_input_replaced() -> None:
    data = b"PMID- 1\nTI  - caf\xc3\xa9\n\nPMID- 2\nTI  - bad \xff\xfe x\n"
    expected = [(0, "PMID- 1\nTI  - caf\u00e9"), (21, "PMID- 2\nTI  - bad \ufffd\ufffd x")]
    assert python_records(data, 4096, 1 << 20) == expected
    assert compiled_records(data, 4096, 1 << 20, as_bytes=True) == encoded(expected)


def test_the_files_of_the_tests_split_into_the_same_records() -> None:
    for path in sorted(DATA.iterdir()):
        data = path.read_bytes()
        for chunk_size in (1, 7, 4096, 1 << 20):
            expected = python_records(data, chunk_size, 1 << 20)
            assert compiled_records(data, chunk_size, 1 << 20) == expected, (path, chunk_size)
            assert compiled_records(data, chunk_size, 1 << 20, as_bytes=True) == encoded(expected)


_PIECES = st.sampled_from(
    [
        "PMID- 1",
        "PMID-2",
        "PMID-  3",
        "PMID- x",
        "\ufeff",
        "\n",
        "\n\n",
        "\r\n",
        " \t\n",
        "      ",
        "TI  - t",
        "AB  - see PMID- 9",
        "AU - x",
        "x",
        "é",
        "\udcff",
        "-",
        "PMI",
        "D- 4",
    ]
)


@given(
    st.lists(st.one_of(_PIECES, st.text(max_size=8)), max_size=40),
    st.binary(max_size=40),
    st.integers(1, 64),
    st.integers(1, 300),
)
def test_any_stream_splits_into_the_same_records(
    pieces: list[str], noise: bytes, chunk_size: int, max_record_bytes: int
) -> None:
    data = "".join(pieces).encode("utf-8", errors="surrogateescape") + noise
    expected = python_records(data, chunk_size, max_record_bytes)
    assert compiled_records(data, chunk_size, max_record_bytes) == expected
    assert compiled_records(data, chunk_size, max_record_bytes, True) == encoded(expected)


def test_a_worker_insisting_on_the_compiled_parser_refuses_to_start_without_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from click.testing import CliRunner

    from worker.cli import main
    from worker.settings import get_settings

    monkeypatch.setattr(native, "_native", None)
    monkeypatch.setenv("MEDLINE_PARSER", "native")
    get_settings.cache_clear()
    native.enabled.cache_clear()
    try:
        result = CliRunner().invoke(main, ["worker"])
    finally:
        get_settings.cache_clear()
        native.enabled.cache_clear()
    assert result.exit_code == 2
    assert "MEDLINE_PARSER=native but the compiled parser is not built" in result.output


# --- PubMed XML -------------------------------------------------------------------------------

#: Values the altered XML records take, chosen to reach every branch of the mapping: blanks,
#: digits and month names where dates are read, non-ASCII, markup-like text, nothing.
XML_VALUES = [
    "  ",
    " x ",
    "Y",
    "12",
    "Feb",
    "doi",
    "2019",
    "7",
    "a&b",
    "<i>",
    "été",
    "\u2009sp\xa0",
]
XML_VALUES += ["Winter", "0", "99", "Sept", "", None]
#: Attributes the mapping reads, and values that mean something to it.
XML_ATTRIBUTES = ["Type", "MajorTopicYN", "IdType", "EIdType", "Source", "DateType", "RefType"]
XML_ATTRIBUTES += ["Label", "Owner", "PubStatus", "IssnType", "Version", "Language", "Status"]
XML_ATTRIBUTE_VALUES = ["Y", "N", "editors", "authors", "doi", "pii", "pmc", "mid", "pubmed"]
XML_ATTRIBUTE_VALUES += ["Cites", "CommentIn", "", "Electronic", "Print", "2", "0", "40000", " 3 "]


def altered_xml(root: Any, rng: random.Random, tags: list[str]) -> str:
    """``root`` after one to six random edits: an element removed, doubled, moved, given a
    child of a known tag, a text, a tail or an attribute."""
    for _ in range(rng.randint(1, 6)):
        element = rng.choice([e for e in root.iter() if e is not root])
        parent = element.getparent()
        edit = rng.randrange(8)
        if edit == 0:
            parent.remove(element)
        elif edit == 1:
            parent.insert(parent.index(element) + 1, copy.deepcopy(element))
        elif edit == 2:
            parent.remove(element)
            parent.insert(rng.randrange(len(parent) + 1), element)
        elif edit == 3:
            etree.SubElement(element, rng.choice(tags)).text = rng.choice(XML_VALUES)
        elif edit == 4:
            element.set(rng.choice(XML_ATTRIBUTES), rng.choice(XML_ATTRIBUTE_VALUES))
        elif edit == 5:
            element.tail = rng.choice(XML_VALUES)
        else:
            element.text = rng.choice(XML_VALUES)
    return etree.tostring(root, encoding="unicode")


def python_xml_fields(text: str) -> tuple[list[tuple[str, str]], int] | str:
    """The reference's fields and PMID version, or what it says is wrong."""
    try:
        fields, pmid = pubmed_xml._record_fields(pubmed_xml._parse(text))
        return fields, pubmed_xml._pmid_version(pmid, fields[0][1] if fields else None)
    except RecordError as exc:
        return exc.reason


def test_the_compiled_xml_mapping_renders_altered_records_as_the_python_one(compiled: Any) -> None:
    # Every record the compiled mapping takes must come out exactly as the reference renders
    # it; the ones it declines go to the reference in the worker. It must take the records
    # the producer writes, and most altered ones, or declining would pass this test.
    tables = pubmed_xml._xml_tables()
    with open_source(DATA / "pubmed-baseline-sample.xml") as stream:
        records = [r.text for r in pubmed_xml.iter_xml_records(stream)]
    records += [pubmed_article(1), medline_citation(2), pubmed_book_article(3, version=2)]
    records += [pubmed_article(4, version=PMID_VERSION_MAX)]
    for text in records:
        assert compiled.xml_fields(text, tables) == python_xml_fields(text)
    roots = [etree.fromstring(text) for text in records]
    tags = sorted({e.tag for root in roots for e in root.iter()})
    rng = random.Random(8)
    taken = 0
    for _ in range(1500):
        text = altered_xml(copy.deepcopy(rng.choice(roots)), rng, tags)
        found = compiled.xml_fields(text, tables)
        if found is not None:
            assert found == python_xml_fields(text), text
            taken += 1
    assert taken > 1300


#: Where NLM's files put processing instructions (``<?pmcsd ?>``, in 2 % of the records of
#: pubmed21n1298.xml.gz), and comments and instructions inside text, between text, and next
#: to each other: lxml keeps an instruction as a child whose tail takes the text after it.
INSTRUCTIONS_AND_COMMENTS = [
    ("</ArticleIdList>", "</ArticleIdList>\n      <?pmcsd ?>\n      "),
    ("<ArticleTitle>Test", "<ArticleTitle><?pi a?>Te<!-- c -->st"),
    ("multiple sclerosis.</ArticleTitle>", "multiple<?x?> <!--y-->sclerosis.<?z?></ArticleTitle>"),
    ("<Abstract><AbstractText>", "<Abstract><!-- c --><?p?> <AbstractText>x<?p?>"),
    ("<Volume>206</Volume>", "<Volume>2<!--c-->06</Volume>"),
    ("<Volume>206</Volume>", "<Volume>2<?p?>06</Volume>"),
    ("<ForeName>Per", "<ForeName><?p q?><!--c-->Per<?p?>"),
    ("</MeshHeading>", "<?p?></MeshHeading>"),
]


@pytest.mark.parametrize(("where", "what"), INSTRUCTIONS_AND_COMMENTS)
def test_instructions_and_comments_in_a_record_read_as_lxml_reads_them(
    compiled: Any, where: str, what: str
) -> None:
    text = pubmed_article(31).replace(where, what, 1)
    assert what in text
    found = compiled.xml_fields(text, pubmed_xml._xml_tables())
    assert found is not None
    assert found == python_xml_fields(text)


@pytest.mark.parametrize(
    "text",
    [
        "<!-- a comment --><MedlineCitation><PMID>1</PMID></MedlineCitation>",
        "<MedlineCitation><PMID>1</PMID></MedlineCitation><?after the root?>",
        "<![CDATA[x]]>",
        "<mml:math xmlns:mml='m'/>",
        "<MedlineCitation xmlns='urn:x'><PMID>1</PMID></MedlineCitation>",
        "<MedlineCitation><PMID>1</PMID><ArticleTitle>&nbsp;</ArticleTitle></MedlineCitation>",
        "<MedlineCitation><PMID>1</PMID><ArticleTitle>&#1;</ArticleTitle></MedlineCitation>",
        "<MedlineCitation><PMID>1</PMID></MedlineCitation><MedlineCitation/>",
        "<MedlineCitation><PMID>1</PMID>",
        "<MedlineCitation><PMID>1</PMID></Other>",
        '<MedlineCitation><PMID Version="x">1</PMID></MedlineCitation>',
        "<MedlineCitation><Article/></MedlineCitation>",
        "<DeleteCitation><PMID>1</PMID></DeleteCitation>",
        "<PubmedArticle><PubmedData/></PubmedArticle>",
        "not xml",
    ],
)
def test_the_compiled_xml_mapping_leaves_what_is_unusual_or_wrong_to_python(
    compiled: Any, text: str
) -> None:
    assert compiled.xml_fields(text, pubmed_xml._xml_tables()) is None
    assert (
        compiled.xml_body_json_at(
            b"\xff" + text.encode(), 0, len(text) + 1, pubmed_xml._xml_tables()
        )
        is None
    )
