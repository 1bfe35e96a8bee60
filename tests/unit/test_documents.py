"""Every field of the document model, from records written for the tests."""

from __future__ import annotations

from datetime import date, datetime

import orjson
import pytest

from tests.helpers import DATA
from worker.documents import record_to_document
from worker.errors import RecordError

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
BTI - Not the title when TI exists.
PG  - 389
LID - 10.1186/lid-only [doi]
LID - 389
AB  - BACKGROUND: Exercise may help. RESULTS: It did.
OAB - Resume en francais.
CI  - (c) The Author(s). 2019.
AD  - An affiliation before any author.
FAU - Dalgas, Ulrik
AU  - Dalgas U
AUID- ORCID: 0000-0002-1234-5678
AD  - Aarhus University, Denmark.
AD  - Danish MS Center, Denmark.
AU  - Stenager E
AD  - MS Clinic, Sonderborg, Denmark.
CN  - Danish MS Exercise Study Group
FIR - Hauser, Stephen L
IR  - Hauser SL
IRAD- UCSF, USA.
LA  - eng
LA  - dan
GR  - R01 NS102735/NS/NINDS NIH HHS/United States
PT  - Journal Article
PT  - Randomized Controlled Trial
DEP - 20190826
TT  - Motion ved sklerose.
PL  - England
TA  - BMC Musculoskelet Disord
JT  - BMC musculoskeletal disorders
JID - 100968565
RN  - 77238-31-4 (Interferon-beta)
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
AID - 10.1186/s12891-019-2760-y [doi]
AID - S1234 [pii]
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
    assert first.full_name == "Dalgas, Ulrik"
    assert first.short_name == "Dalgas U"
    assert first.identifiers == ["ORCID: 0000-0002-1234-5678"]
    assert first.affiliations == ["Aarhus University, Denmark.", "Danish MS Center, Denmark."]
    assert (second.full_name, second.short_name) == (None, "Stenager E")
    assert second.affiliations == ["MS Clinic, Sonderborg, Denmark."]
    assert doc.corporate_authors == ["Danish MS Exercise Study Group"]
    (investigator,) = doc.investigators
    assert investigator.full_name == "Hauser, Stephen L"
    assert investigator.affiliations == ["UCSF, USA."]
    assert [(m.descriptor, m.qualifiers, m.major) for m in doc.mesh] == [
        ("Adult", [], False),
        ("Exercise Therapy", ["methods"], True),
        ("Multiple Sclerosis", ["complications", "rehabilitation"], True),
        ("Fatigue", ["etiology", "therapy"], False),
    ]
    assert doc.keywords == ["Exercise", "Fatigue"]
    assert [(s.registry_number, s.name) for s in doc.substances] == [
        ("77238-31-4", "Interferon-beta"),
        (None, "IL7R protein, human"),
    ]
    assert doc.publication_types == ["Journal Article", "Randomized Controlled Trial"]
    assert doc.languages == ["eng", "dan"]
    (grant,) = doc.grants
    assert (grant.grant_id, grant.acronym, grant.agency, grant.country) == (
        "R01 NS102735",
        "NS",
        "NINDS NIH HHS",
        "United States",
    )
    journal = doc.journal
    assert (journal.title, journal.iso_abbrev, journal.nlm_id) == (
        "BMC musculoskeletal disorders",
        "BMC Musculoskelet Disord",
        "100968565",
    )
    assert [(i.value, i.type) for i in journal.issns] == [
        ("1471-2474", "Electronic"),
        ("1471-2474", "Linking"),
    ]
    assert (journal.volume, journal.issue, journal.pages, journal.country) == (
        "20",
        "1",
        "389",
        "England",
    )
    assert doc.pub_date is not None
    assert (doc.pub_date.raw, doc.pub_date.year, doc.pub_date.date) == (
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
    assert [(h.status, h.date) for h in doc.history] == [
        ("received", datetime(2019, 3, 14)),
        ("pubmed", datetime(2019, 8, 28, 6, 0)),
    ]
    assert doc.doi == "10.1186/s12891-019-2760-y"  # the AID, not the LID
    assert doc.pii == "S1234"
    assert doc.pmc == "PMC6708233"
    assert ("389", None) in [(i.value, i.type) for i in doc.article_ids]
    assert len(doc.article_ids) == 4
    assert (doc.status, doc.owner, doc.publication_status) == ("MEDLINE", "NLM", "epublish")
    assert doc.subsets == ["IM", "X"]
    assert doc.source == "BMC Musculoskelet Disord. 2019 Aug 26;20(1):389."
    assert doc.extra == {
        "BTI": ["Not the title when TI exists."],
        "CI": ["(c) The Author(s). 2019."],
        "AD": ["An affiliation before any author."],
        "OTO": ["NOTNLM"],
    }
    assert doc.revision_version() == 20211204


def test_index_json_is_the_model_without_nulls() -> None:
    doc = record_to_document(RICH)
    body = orjson.loads(doc.index_json())
    assert body == doc.index_body()
    assert "abstract" in body
    assert all(value is not None for value in body.values())


def test_a_book_takes_its_title_from_bti() -> None:
    doc = record_to_document("PMID- 5\nBTI - Handbook of Neurology.\nDP  - 2010")
    assert doc.title == "Handbook of Neurology."


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("PMID- 12\nDP  - 2003", "title", "is required"),
        ("PMID- 12\nTI  -     ", "title", "is empty"),
        ("PMID- 12a\nTI  - Fine.", "pmid", "digits only"),
    ],
)
def test_validation_errors_name_the_field_in_plain_words(text: str, field: str, words: str) -> None:
    with pytest.raises(RecordError) as caught:
        record_to_document(text)
    assert field in caught.value.reason
    assert words in caught.value.reason
    assert caught.value.errors[0]["field"] == field


def test_the_pmid_is_reported_even_when_the_record_is_invalid() -> None:
    with pytest.raises(RecordError) as caught:
        record_to_document("PMID- 99000001\nOWN - NLM")
    assert caught.value.pmid == "99000001"


def test_sample_file_records_are_all_valid() -> None:
    from worker.medline_text import iter_raw_records, open_source

    with open_source(DATA / "sample.medline") as stream:
        docs = [record_to_document(r.text) for r in iter_raw_records(stream)]
    assert len(docs) == 25
    assert len({d.pmid for d in docs}) == 25
