"""Every field of the document model, from records written for the tests; validation errors in
plain words; the indexed body."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.deletion import Deletion
from schemas.document import DERIVED_MESH_FIELDS, PMID_VERSION_MAX, Document, prune
from tests.helpers import sample_documents
from tests.unit.test_dates import PUBLICATION_DATES
from worker import documents
from worker.documents import build_document, record_to_document
from worker.errors import MedlineParseError, RecordError
from worker.medline_text import format_record

#: Each test runs with the compiled parser and with the Python one.
pytestmark = pytest.mark.usefixtures("parser_mode")

RICH = """\
PMID- 31452104
OWN - NLM
STAT- MEDLINE
DCOM- 20200106
LR  - 20211204
IS  - 1471-2474 (Electronic)
IS  - 1471-2474 (Linking)
VI  - 20
IP  - 1
DP  - 2019 Aug 26
TI  - Exercise in multiple sclerosis.
PG  - 389
LID - 10.1186/lid-only [doi]
LID - 389
AB  - BACKGROUND: Exercise may help. RESULTS: It did.
OAB - Resume en francais.
OABL- fre
CI  - (c) The Author(s). 2019.
AD  - An affiliation before any author.
FAU - Dalgas, Ulrik
AU  - Dalgas U
AUID- ORCID: 0000-0002-1234-5678
AD  - Aarhus University, Denmark.
AD  - Danish MS Center, Denmark.
AU  - Stenager E
AD  - MS Clinic, Sonderborg, Denmark.
IRAD- Not an investigator's.
CN  - Danish MS Exercise Study Group
AD  - The group's address.
FIR - Hauser, Stephen L
IR  - Hauser SL
AUID- ORCID: 0000-0002-0000-0001
IRAD- UCSF, USA.
IR  - Compston A
LA  - eng
LA  - dan
GR  - R01 NS102735/NS/NINDS NIH HHS/United States
GR  - G0600/123/MRC_/Medical Research Council/United Kingdom
GR  - 076113/Wellcome Trust
PT  - Journal Article
PT  - Randomized Controlled Trial
DEP - 20190826
TT  - Motion ved sklerose.
PL  - England
TA  - BMC Musculoskelet Disord
JT  - BMC musculoskeletal disorders
JID - 100968565
RN  - 77238-31-4 (Interferon-beta)
RN  - EC 3.4.21.- (Serine Endopeptidases)
RN  - 0 (Interleukin-2 (1-30))
NM  - IL7R protein, human
SB  - IM
SB  - X
MH  - Adult
MH  - Exercise Therapy/*methods
MH  - *Multiple Sclerosis/complications/rehabilitation
MH  - Fatigue/etiology/therapy
PMC - PMC6708233
OTO - NOTNLM
OT  - Exercise
OT  - Fatigue
EDAT- 2019/08/28 06:00
MHDA- 2020/01/07 06:00
CRDT- 2019/08/28 06:00
PHST- 2019/03/14 00:00 [received]
PHST- 2019/08/28 06:00 [pubmed]
PHST- sometime [accepted]
AID - 10.1186/s12891-019-2760-y [doi]
AID - S1234 [pii]
AID - 10.1186/second-doi [doi]
PST - epublish
SO  - BMC Musculoskelet Disord. 2019 Aug 26;20(1):389.
"""


def test_every_field_is_mapped() -> None:
    doc = record_to_document(RICH)
    assert doc.pmid == "31452104"
    assert doc.title == "Exercise in multiple sclerosis."
    assert doc.abstract == "BACKGROUND: Exercise may help. RESULTS: It did."
    assert doc.other_abstracts == ["Resume en francais."]
    assert doc.transliterated_title == "Motion ved sklerose."

    first, second = doc.authors
    assert (first["full_name"], first["short_name"]) == ("Dalgas, Ulrik", "Dalgas U")
    assert first["identifiers"] == ["ORCID: 0000-0002-1234-5678"]
    assert first["affiliations"] == ["Aarhus University, Denmark.", "Danish MS Center, Denmark."]
    assert second == {
        "short_name": "Stenager E",
        "affiliations": ["MS Clinic, Sonderborg, Denmark."],
    }
    assert doc.corporate_authors == ["Danish MS Exercise Study Group"]
    hauser, compston = doc.investigators
    assert (hauser["full_name"], hauser["short_name"]) == ("Hauser, Stephen L", "Hauser SL")
    assert hauser["affiliations"] == ["UCSF, USA."]
    assert hauser["identifiers"] == ["ORCID: 0000-0002-0000-0001"]
    assert compston == {"short_name": "Compston A"}

    assert [(m["descriptor"], m.get("qualifiers", []), m["major"]) for m in doc.mesh] == [
        ("Adult", [], False),
        ("Exercise Therapy", ["methods"], True),
        ("Multiple Sclerosis", ["complications", "rehabilitation"], True),
        ("Fatigue", ["etiology", "therapy"], False),
    ]
    # Where the star was: on a qualifier (the heading/qualifier pair is the main topic) or on
    # the descriptor; the keys are there only when it was.
    assert [(m.get("descriptor_major"), m.get("major_qualifiers")) for m in doc.mesh] == [
        (None, None),
        (None, ["methods"]),
        (True, None),
        (None, None),
    ]
    # PubMed's [majr] and "term/subheading" searches as plain terms, for the flat mapping.
    assert set(DERIVED_MESH_FIELDS) == {"mesh_major_topics", "mesh_qualified_terms"}
    assert set(DERIVED_MESH_FIELDS) <= set(Document.model_fields)
    assert doc.mesh_major_topics == ["Exercise Therapy", "Multiple Sclerosis"]
    assert doc.mesh_qualified_terms == [
        "Exercise Therapy/methods",
        "Multiple Sclerosis/complications",
        "Multiple Sclerosis/rehabilitation",
        "Fatigue/etiology",
        "Fatigue/therapy",
    ]
    assert doc.keywords == ["Exercise", "Fatigue"]
    assert [(s.get("registry_number"), s["name"]) for s in doc.substances] == [
        ("77238-31-4", "Interferon-beta"),
        ("EC 3.4.21.-", "Serine Endopeptidases"),
        ("0", "Interleukin-2 (1-30)"),
        (None, "IL7R protein, human"),
    ]
    assert doc.publication_types == ["Journal Article", "Randomized Controlled Trial"]
    assert doc.languages == ["eng", "dan"]
    assert [
        (g["grant_id"], g["acronym"], g.get("agency"), g.get("country")) for g in doc.grants
    ] == [
        ("R01 NS102735", "NS", "NINDS NIH HHS", "United States"),
        ("G0600/123", "MRC_", "Medical Research Council", "United Kingdom"),
        ("076113", "Wellcome Trust", None, None),
    ]
    assert doc.grants[1]["raw"] == "G0600/123/MRC_/Medical Research Council/United Kingdom"

    journal = doc.journal
    assert (journal["title"], journal["iso_abbrev"], journal["nlm_id"]) == (
        "BMC musculoskeletal disorders",
        "BMC Musculoskelet Disord",
        "100968565",
    )
    assert [(i["value"], i["type"]) for i in journal["issns"]] == [
        ("1471-2474", "Electronic"),
        ("1471-2474", "Linking"),
    ]
    assert (journal["volume"], journal["issue"], journal["pages"], journal["country"]) == (
        "20",
        "1",
        "389",
        "England",
    )

    assert doc.pub_date is not None
    assert (doc.pub_date["raw"], doc.pub_date["year"], doc.pub_date["date"]) == (
        "2019 Aug 26",
        2019,
        date(2019, 8, 26),
    )
    assert doc.electronic_pub_date == date(2019, 8, 26)
    assert doc.completed == date(2020, 1, 6)
    assert doc.revised == date(2021, 12, 4)
    assert doc.entrez_date == datetime(2019, 8, 28, 6, 0)
    assert doc.mesh_date == datetime(2020, 1, 7, 6, 0)
    assert doc.created == datetime(2019, 8, 28, 6, 0)
    assert [(h["status"], h["date"]) for h in doc.history] == [
        ("received", datetime(2019, 3, 14)),
        ("pubmed", datetime(2019, 8, 28, 6, 0)),
    ]

    assert doc.doi == "10.1186/s12891-019-2760-y"  # the first AID, not the LID
    assert doc.pii == "S1234"
    assert doc.pmc == "PMC6708233"
    assert [(i["value"], i.get("type")) for i in doc.article_ids] == [
        ("10.1186/lid-only", "doi"),
        ("389", None),
        ("10.1186/s12891-019-2760-y", "doi"),
        ("S1234", "pii"),
        ("10.1186/second-doi", "doi"),
    ]
    assert (doc.status, doc.owner, doc.publication_status) == ("MEDLINE", "NLM", "epublish")
    assert doc.subsets == ["IM", "X"]
    assert doc.source == "BMC Musculoskelet Disord. 2019 Aug 26;20(1):389."

    # Nothing dropped: unmapped tags, lines that belong to nobody, unreadable dates.
    assert doc.extra == {
        "OABL": ["fre"],
        "CI": ["(c) The Author(s). 2019."],
        "AD": ["An affiliation before any author.", "The group's address."],
        "IRAD": ["Not an investigator's."],
        "OTO": ["NOTNLM"],
        "PHST": ["sometime [accepted]"],
    }
    assert doc.revision_version() == 20211204


def _values_in(body: Any) -> list[Any]:
    if isinstance(body, dict):
        return [body, *(v for value in body.values() for v in _values_in(value))]
    if isinstance(body, list):
        return [body, *(v for value in body for v in _values_in(value))]
    return [body]


def test_the_index_body_is_the_model_in_json_without_nulls_or_empties() -> None:
    for doc in [record_to_document(RICH), *sample_documents()]:
        body = doc.index_body()
        assert body == prune(doc.model_dump(mode="json")), doc.pmid
        assert all(v is not None and v != [] and v != {} for v in _values_in(body)), doc.pmid
        assert orjson.loads(orjson.dumps(body)) == body  # JSON types only
        assert doc.index_json() == orjson.dumps(body)
        assert Document.model_validate(body) == doc


def test_an_unknown_key_is_refused_in_the_document_and_left_out_of_the_model_in_a_part() -> None:
    with pytest.raises(ValidationError, match="extra_forbidden"):
        Document.from_json(b'{"pmid":"1","title":"T","colour":"red"}')
    # A part ignores what it does not declare (cheaper to validate: PART_CONFIG); the model
    # then lacks a key the body has, which is what the round trips above would notice.
    body = b'{"pmid":"1","title":"T","mesh":[{"descriptor":"Humans","major":false,"x":1}]}'
    doc = Document.from_json(body)
    assert prune(doc.model_dump(mode="json")) != orjson.loads(body)
    assert doc.mesh == [{"descriptor": "Humans", "major": False}]


def test_a_document_made_directly_works_out_its_body() -> None:
    doc = Document(
        pmid="1", title="T", mesh=[{"descriptor": "Humans", "major": False}], revised="2020-01-02"
    )
    assert doc.index_body() == {
        "pmid": "1",
        "title": "T",
        "mesh": [{"descriptor": "Humans", "major": False}],
        "revised": "2020-01-02",
    }
    changed = doc.model_copy(update={"title": "New"})
    assert changed.index_body()["title"] == "New" and doc.index_body()["title"] == "T"
    with pytest.raises(ValidationError):
        doc.title = "frozen"  # type: ignore[misc]


@pytest.mark.parametrize(("raw", "year", "first_day"), PUBLICATION_DATES)
def test_every_publication_date_shape_is_a_valid_document(
    raw: str, year: int | None, first_day: date | None
) -> None:
    doc = record_to_document(format_record([("PMID", "5"), ("TI", "T."), ("DP", raw)]))
    if not raw:
        assert doc.pub_date is not None and doc.pub_date["raw"] == ""
        return
    assert doc.pub_date is not None
    assert (doc.pub_date["raw"], doc.pub_date.get("year"), doc.pub_date.get("date")) == (
        raw,
        year,
        first_day,
    )


def test_repeated_single_fields_and_unreadable_dates_go_to_extra() -> None:
    doc = record_to_document(
        "PMID- 1\nTI  - First.\nTI  - Second.\nDP  - 2003\nDP  - 2004\nJT  - A\nJT  - B\n"
        "DCOM- 2003\nLR  - 20200101\nLR  - 20210101\nEDAT- tomorrow\nPMID- 2"
    )
    assert (doc.title, doc.journal["title"], doc.revised) == ("First.", "A", date(2020, 1, 1))
    assert doc.pub_date is not None and doc.pub_date["raw"] == "2003"
    assert doc.completed is None and doc.entrez_date is None
    assert doc.extra == {
        "TI": ["Second."],
        "DP": ["2004"],
        "JT": ["B"],
        "DCOM": ["2003"],
        "LR": ["20210101"],
        "EDAT": ["tomorrow"],
        "PMID": ["2"],
    }
    assert doc.revision_version() == 20200101


def test_an_lid_gives_the_doi_only_when_no_aid_does() -> None:
    doc = record_to_document("PMID- 1\nTI  - T.\nLID - 10.1/lid [doi]\nLID - S9 [pii]")
    assert (doc.doi, doc.pii) == ("10.1/lid", "S9")
    doc = record_to_document("PMID- 1\nTI  - T.\nLID - 10.1/lid [doi]\nAID - 10.1/aid [doi]")
    assert (doc.doi, doc.pii) == ("10.1/aid", None)


def test_a_book_takes_its_title_from_bti() -> None:
    doc = record_to_document("PMID- 5\nBTI - Handbook of Neurology.\nDP  - 2010\nED  - Doe J")
    assert doc.title == "Handbook of Neurology."
    assert doc.extra == {"BTI": ["Handbook of Neurology."], "ED": ["Doe J"]}


def test_a_citation_without_an_english_title_takes_its_vernacular_one() -> None:
    doc = record_to_document("PMID- 6\nTT  - Briefsammlung Wittelshöfer.\nLA  - ger")
    assert doc.title == doc.transliterated_title == "Briefsammlung Wittelshöfer."
    # TI, where there is one, stays the title.
    doc = record_to_document("PMID- 6\nTI  - [Letters].\nTT  - Briefe.")
    assert (doc.title, doc.transliterated_title) == ("[Letters].", "Briefe.")
    # And a citation with no title at all (PubMed has errata so) is indexed without one.
    doc = record_to_document("PMID- 6\nLA  - eng\nPT  - Published Erratum")
    assert doc.title is None and "title" not in doc.index_body()


def test_the_revision_version_falls_back_to_completed_then_a_books_drdt_then_zero() -> None:
    assert record_to_document("PMID- 1\nTI  - T.\nDCOM- 20030402").revision_version() == 20030402
    book = record_to_document("PMID- 5\nBTI - Handbook.\nDRDT- 20230511\nCTDT- 20100320")
    assert book.book_revised == date(2023, 5, 11) and book.revision_version() == 20230511
    assert "DRDT" not in book.extra and book.extra["CTDT"] == ["20100320"]
    # LR outranks DRDT, should a record carry both.
    both = record_to_document("PMID- 1\nTI  - T.\nDRDT- 20230511\nLR  - 20240101")
    assert (both.book_revised, both.revision_version()) == (date(2023, 5, 11), 20240101)
    assert record_to_document("PMID- 1\nTI  - T.").revision_version() == 0


_DAYS = st.dates(date(1, 1, 1), date(9999, 12, 31))


@given(
    version=st.integers(1, PMID_VERSION_MAX),
    day=st.one_of(st.none(), _DAYS),
    other_version=st.integers(1, PMID_VERSION_MAX),
    other_day=st.one_of(st.none(), _DAYS),
)
def test_a_later_pmid_version_outranks_every_revision_of_an_earlier_one_and_survives_its_delete(
    version: int, day: date | None, other_version: int, other_day: date | None
) -> None:
    def document(v: int, revised: date | None) -> Document:
        return Document(pmid="7", title="T.", pmid_version=v if v > 1 else None, revised=revised)

    ours, other = document(version, day), document(other_version, other_day)
    if version > other_version:
        assert ours.revision_version() > other.revision_version()
    # Elasticsearch deletes at external_gte when the delete's version is at least the
    # document's: a DeleteCitation of one version removes it and the ones before, no later one.
    deletes = Deletion(pmid="7", pmid_version=other_version).external_version() >= (
        ours.revision_version()
    )
    assert deletes == (version <= other_version)


def test_a_version_one_citation_keeps_its_date_as_its_version_and_no_version_field() -> None:
    doc = record_to_document("PMID- 1\nTI  - T.\nLR  - 20240101")
    assert doc.pmid_version is None and "pmid_version" not in doc.index_body()
    assert doc.revision_version() == 20240101
    with pytest.raises(ValidationError):
        Document(pmid="1", title="T.", pmid_version=1)


def test_a_drdt_that_is_not_a_date_is_kept_as_written_and_orders_nothing() -> None:
    book = record_to_document("PMID- 5\nBTI - Handbook.\nDRDT- 2023 May")
    assert book.book_revised is None and book.extra["DRDT"] == ["2023 May"]
    assert book.revision_version() == 0


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("PMID- 12\nTI  -     ", "title", "field 'title' (TI) is empty"),
        ("PMID- 12a\nTI  - Fine.", "pmid", "field 'pmid' (PMID) must be digits only, got '12a'"),
        (
            "PMID- 123456789012345678901\nTI  - Fine.",
            "pmid",
            "field 'pmid' (PMID) is too long (at most 20 characters)",
        ),
        ("PMID- 12\nTI  - T.\nMH  - */Humans", "mesh.0.descriptor", "(MH) is empty"),
    ],
)
def test_validation_errors_name_the_field_in_plain_words(text: str, field: str, words: str) -> None:
    with pytest.raises(RecordError) as caught:
        record_to_document(text)
    error = caught.value
    assert not isinstance(error, MedlineParseError)
    assert words in error.reason
    assert error.errors[0]["field"] == field
    assert set(error.errors[0]) == {"field", "message", "value"}
    assert error.pmid == text.split("\n")[0][6:]


def test_several_problems_are_all_listed() -> None:
    with pytest.raises(RecordError) as caught:
        record_to_document("PMID- 1x\nTI  -    \nMH  - /a")
    assert [e["field"] for e in caught.value.errors] == ["pmid", "title", "mesh.0.descriptor"]
    assert caught.value.reason.endswith("(and 2 more problems)")


def test_a_failure_inside_the_parser_becomes_a_record_error(
    monkeypatch: pytest.MonkeyPatch, parser_mode: str
) -> None:
    def broken(*args: object) -> tuple[dict[str, Any], dict[str, Any]]:
        raise KeyError("bug")

    if parser_mode == "python":
        monkeypatch.setattr(documents, "_fields_to_body", broken)
    else:

        class BrokenParser:
            body_json = fields_body_json = staticmethod(broken)

        monkeypatch.setattr(documents, "compiled_parser", BrokenParser)
    with pytest.raises(MedlineParseError, match="the parser failed on this record"):
        record_to_document("PMID- 1\nTI  - T.")


def test_the_sample_file_is_valid_and_varied() -> None:
    docs = sample_documents()
    assert len(docs) == 25 and len({d.pmid for d in docs}) == 25
    assert sum("multiple sclerosis" in d.title.lower() for d in docs) >= 15  # the demo's query
    assert any(d.investigators for d in docs) and any(d.corporate_authors for d in docs)
    assert any(a.get("identifiers") for d in docs for a in d.authors)
    assert any(len(a.get("affiliations", [])) > 1 for d in docs for a in d.authors)
    assert any(m["major"] for d in docs for m in d.mesh)
    assert any(q for d in docs for m in d.mesh for q in m.get("qualifiers", []))
    assert any(d.keywords for d in docs) and any(d.grants for d in docs)
    assert any(s.get("registry_number", "0") != "0" for d in docs for s in d.substances)
    assert any(d.electronic_pub_date for d in docs) and any(d.pmc for d in docs)
    assert any(d.doi for d in docs) and any(d.pii for d in docs) and any(d.history for d in docs)
    assert any(d.transliterated_title and d.languages != ["eng"] for d in docs)
    assert any(d.other_abstracts for d in docs)
    assert any("BTI" in d.extra and "TI" not in d.extra for d in docs)  # a book
    shapes = {d.pub_date["raw"] for d in docs if d.pub_date}
    assert {"2003 Feb 15", "1998 Jan-Feb", "2003 Winter", "2001 Dec 15-2002 Jan 3"} <= shapes
    assert {"2003", "2003 Feb", "2000 Spring-Summer", "1999 Jul 13-19"} <= shapes
    assert {d.status for d in docs} >= {"MEDLINE", "PubMed-not-MEDLINE", "In-Process", "Publisher"}


_value = st.text(
    alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Nd", "Zs", "Po")), max_size=40
)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                "TI AB FAU AU AD AUID FIR IR IRAD CN MH OT RN NM PT LA GR JT TA JID IS VI IP PG "
                "PL DP DEP DCOM LR EDAT MHDA CRDT PHST AID LID PMC STAT OWN PST SB SO XX".split()
            ),
            _value,
        ),
        max_size=40,
    )
)
def test_any_fields_give_a_document_whose_body_is_its_json_or_a_record_error(
    fields: list[tuple[str, str]],
) -> None:
    fields = [("PMID", "1"), ("TI", "T."), *[(tag, " ".join(v.split())) for tag, v in fields]]
    try:
        doc = build_document(fields)
    except RecordError as error:
        assert error.errors and error.reason
        return
    body = doc.index_body()
    assert body == prune(doc.model_dump(mode="json"))
    # Nothing dropped: every word of every value is somewhere in the body (dates aside, which
    # are rewritten as ISO dates).
    text = " ".join(v for v in _values_in(body) if isinstance(v, str))
    words = {w for _, value in fields for w in re.findall(r"[^\W\d_]+", value)}
    assert all(word in text for word in words)
