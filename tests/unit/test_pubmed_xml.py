"""PubMed XML: splitting with byte offsets in constant memory, and the mapping onto the same
document as the MEDLINE text format."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import fakeredis
import orjson
import pytest
from lxml import etree

from schemas.deletion import Deletion
from schemas.document import PMID_VERSION_MAX, Document
from schemas.messages import BatchMessage, PackedBatch, RawRecord
from tests.helpers import DATA
from tests.pubmed_records import (
    article_set,
    delete_citation,
    medline_citation,
    pubmed_article,
    pubmed_book_article,
    write_xml,
)
from worker import pubmed_xml
from worker.documents import record_to_document
from worker.errors import RecordError
from worker.jobs import JobStore
from worker.medline_text import format_record, iter_raw_records, open_source
from worker.pipeline import parse_batch
from worker.producer import enqueue, iter_records, sniff_format
from worker.pubmed_xml import (
    XmlSourceError,
    iter_xml_records,
    xml_record_to_document,
    xml_record_to_fields,
)
from worker.settings import Settings

#: Each test runs with the compiled parser and with the Python one.
pytestmark = pytest.mark.usefixtures("parser_mode")

SAMPLE_XML = DATA / "pubmed-baseline-sample.xml"
SAMPLE_TEXT = DATA / "pubmed-baseline-sample.medline"
SEED_PMID = "12559498"


def xml_records(path: Path) -> list[RawRecord]:
    with open_source(path) as stream:
        return list(iter_xml_records(stream))


def by_pmid(documents: Iterator[Document | Deletion]) -> dict[str, Document]:
    found = {}
    for document in documents:
        assert isinstance(document, Document)
        found[document.pmid] = document
    return found


def xml_documents(path: Path) -> dict[str, Document]:
    return by_pmid(xml_record_to_document(r.text) for r in xml_records(path))


def text_documents(path: Path) -> dict[str, Document]:
    with open_source(path) as stream:
        return by_pmid(record_to_document(r.text) for r in iter_raw_records(stream))


# --- same citation, same document -------------------------------------------------------------


def test_each_citation_in_xml_and_in_text_is_the_same_document() -> None:
    from_xml = xml_documents(SAMPLE_XML)
    from_text = text_documents(SAMPLE_TEXT)
    assert sorted(from_xml) == sorted(from_text) == ["12559498", "31071234", "9512345"]
    for pmid, document in from_xml.items():
        assert document.index_body() == from_text[pmid].index_body(), pmid
        assert document == from_text[pmid]


@pytest.mark.parametrize("text_form", ["seed-medline.txt", "seed-medline-collapsed.txt"])
def test_the_seed_in_xml_equals_its_real_medline_forms(text_form: str) -> None:
    (seed,) = text_documents(DATA / text_form).values()
    assert xml_documents(SAMPLE_XML)[SEED_PMID] == seed


def test_the_seed_renders_exactly_as_pubmed_prints_it() -> None:
    record = next(r for r in xml_records(SAMPLE_XML) if SEED_PMID in r.text[:400])
    rendered = format_record(xml_record_to_fields(record.text))
    assert rendered == (DATA / "seed-medline.txt").read_text().rstrip("\n")


def test_rich_citation_fields_land_where_the_text_format_puts_them() -> None:
    doc = xml_documents(SAMPLE_XML)["31071234"]
    # Inline markup flattened; structured abstract labelled as the text format does.
    assert doc.title.startswith("Effect of Lactobacillus rhamnosus GG on CD4+ T cells")
    assert doc.abstract is not None
    assert doc.abstract.startswith("BACKGROUND: Probiotics may modulate")
    assert " METHODS: We randomly assigned" in doc.abstract
    # Authors keep their own affiliations and ORCID; a group is a corporate author.
    berg, oneill = doc.authors
    assert berg["full_name"] == "Berg, Åsa M" and len(berg["affiliations"]) == 2
    assert berg["identifiers"] == ["ORCID: 0000-0002-1825-0097"]
    assert oneill["short_name"] == "O'Neill TJ Jr" and "identifiers" not in oneill
    assert doc.corporate_authors == ["PROBIO Study Group"]
    assert [i["full_name"] for i in doc.investigators] == ["Jensen, Anne", "Kim, Min-Jun"]
    assert doc.investigators[0]["affiliations"] == ["Rigshospitalet, Copenhagen, Denmark."]
    # MeSH with major flags, on a descriptor or a qualifier.
    majors = {m["descriptor"]: m["major"] for m in doc.mesh}
    assert majors["Lacticaseibacillus rhamnosus"] and majors["CD4-Positive T-Lymphocytes"]
    assert not majors["Humans"]
    where = {
        m["descriptor"]: (m.get("descriptor_major"), m.get("major_qualifiers")) for m in doc.mesh
    }
    assert where["Lacticaseibacillus rhamnosus"] == (True, None)
    assert where["CD4-Positive T-Lymphocytes"] == (None, ["immunology"])
    assert where["Humans"] == (None, None)
    assert doc.keywords == ["probiotics", "T cells", "atopic dermatitis"]
    assert [s["name"] for s in doc.substances] == [
        "Cytokines",
        "Trypsin",
        "Lactobacillus rhamnosus GG",
    ]
    assert [g["agency"] for g in doc.grants] == ["NIAID NIH HHS", "Wellcome Trust"]
    assert str(doc.revised) == "2021-03-02" and doc.revision_version() == 20210302
    assert str(doc.electronic_pub_date) == "2019-05-09"
    assert doc.pub_date is not None and doc.pub_date["raw"] == "2019 May"
    assert [h["status"] for h in doc.history][:2] == ["received", "accepted"]
    assert (doc.doi, doc.pmc) == ("10.1371/journal.pone.0216543", "PMC6508000")
    assert doc.other_abstracts == ["Publisher: Resumen disponible del editor."]
    assert doc.extra["CIN"] == ["PLoS One. 2019 Jul 1;14(7):e0219000 PMID: 31260001"]
    assert doc.extra["EIN"] == ["PLoS One. 2019 Aug 2;14(8):e0220999 PMID: 31370002"]
    assert "Cites" not in doc.extra and "CC" not in doc.extra  # the reference list
    other = xml_documents(SAMPLE_XML)["9512345"]
    assert other.pub_date is not None and other.pub_date["raw"] == "1998 Jan-Feb"
    assert other.transliterated_title == (
        "Les rickettsioses en Provence : la fièvre boutonneuse revisitée."
    )
    assert other.extra["CON"] == ["Bull Acad Natl Med. 1997;181(5):879-90 PMID: 9412345"]


def test_season_and_numeric_months() -> None:
    text = pubmed_article(7).replace(
        "<Month>Feb</Month><Day>15</Day></PubDate>", "<Season>Winter</Season></PubDate>"
    )
    doc = xml_record_to_document(text)
    assert isinstance(doc, Document) and doc.pub_date is not None
    assert doc.pub_date["raw"] == "2003 Winter" and doc.pub_date["year"] == 2003
    numeric = pubmed_article(8).replace("<Month>Feb</Month>", "<Month>02</Month>")
    doc = xml_record_to_document(numeric)
    assert isinstance(doc, Document) and doc.pub_date is not None
    assert doc.pub_date["raw"] == "2003 Feb 15"


def test_a_book_article_is_mapped_simply() -> None:
    text = (
        '<PubmedBookArticle><BookDocument><PMID Version="1">20301295</PMID>'
        '<ArticleIdList><ArticleId IdType="bookaccession">NBK1116</ArticleId></ArticleIdList>'
        "<Book><Publisher><PublisherName>University of Washington, Seattle</PublisherName>"
        "<PublisherLocation>Seattle (WA)</PublisherLocation></Publisher>"
        "<BookTitle>GeneReviews<sup>®</sup></BookTitle><PubDate><Year>1993</Year></PubDate>"
        '<AuthorList Type="editors"><Author><LastName>Adam</LastName><ForeName>Margaret P'
        "</ForeName><Initials>MP</Initials></Author></AuthorList></Book>"
        "<ArticleTitle>Alpha-Thalassemia</ArticleTitle><Language>eng</Language>"
        '<AuthorList Type="authors"><Author><LastName>Tamary</LastName><ForeName>Hannah'
        "</ForeName><Initials>H</Initials></Author></AuthorList>"
        "<PublicationType>Review</PublicationType>"
        '<Abstract><AbstractText Label="CLINICAL CHARACTERISTICS">Alpha-thalassemia has two'
        " forms.</AbstractText></Abstract>"
        f"{_book_date('DateRevised', '20230511')}</BookDocument>"
        '<PubmedBookData><History><PubMedPubDate PubStatus="pubmed"><Year>2010</Year>'
        "<Month>3</Month><Day>20</Day><Hour>6</Hour><Minute>0</Minute></PubMedPubDate>"
        "</History><PublicationStatus>ppublish</PublicationStatus></PubmedBookData>"
        "</PubmedBookArticle>"
    )
    doc = xml_record_to_document(text)
    assert isinstance(doc, Document)
    assert (doc.pmid, doc.title) == ("20301295", "Alpha-Thalassemia")
    assert doc.abstract == "CLINICAL CHARACTERISTICS: Alpha-thalassemia has two forms."
    assert doc.authors[0]["full_name"] == "Tamary, Hannah"
    assert doc.extra["BTI"] == ["GeneReviews®"] and doc.extra["ED"] == ["Adam MP"]
    assert doc.extra["PB"] and "DRDT" not in doc.extra
    # A book has no LR or DCOM: its DateRevised orders its revisions.
    assert str(doc.book_revised) == "2023-05-11" and doc.revision_version() == 20230511
    assert doc.article_ids[0]["value"] == "NBK1116"
    assert str(doc.entrez_date) == "2010-03-20 06:00:00"


def test_a_citation_with_an_empty_article_title_is_indexed_under_its_vernacular_one() -> None:
    # As NLM's files have them (53 of the 20,808 records of pubmed21n1298.xml.gz).
    text = pubmed_article(9).replace(
        "<ArticleTitle>Test citation 9 on remyelination in multiple sclerosis.</ArticleTitle>",
        "<ArticleTitle/>",
    )
    text = text.replace(
        "</PublicationTypeList>",
        "</PublicationTypeList><VernacularTitle>Briefsammlung Wittelshöfer.</VernacularTitle>",
    )
    doc = xml_record_to_document(text)
    assert isinstance(doc, Document)
    assert doc.title == doc.transliterated_title == "Briefsammlung Wittelshöfer."
    record = text.encode()
    assert pubmed_xml.xml_record_span_to_document(record, 0, len(record)) == doc


def _book_date(tag: str, value: str) -> str:
    return (
        f"<{tag}><Year>{value[:4]}</Year><Month>{value[4:6]}</Month><Day>{value[6:]}</Day></{tag}>"
    )


# --- deletions and bad records ----------------------------------------------------------------


def test_delete_citation_is_one_deletion_per_pmid(tmp_path: Path) -> None:
    path = write_xml(tmp_path / "u.xml", article_set([pubmed_article(1)], deletes=[2, 3]))
    records = xml_records(path)
    assert [r.text for r in records[1:]] == [
        '<DeleteCitation><PMID Version="1">2</PMID></DeleteCitation>',
        '<DeleteCitation><PMID Version="1">3</PMID></DeleteCitation>',
    ]
    assert [xml_record_to_document(r.text) for r in records[1:]] == [
        Deletion(pmid="2"),
        Deletion(pmid="3"),
    ]


@pytest.mark.parametrize(
    "record",
    [pubmed_article, medline_citation, pubmed_book_article],
    ids=["article", "bare-citation", "book"],
)
def test_a_versioned_citation_keeps_its_version_which_outranks_any_revision_date(
    record: Callable[..., str],
) -> None:
    first = xml_record_to_document(record(9, revised="20240601"))
    second = xml_record_to_document(record(9, title="Version 2.", revised="20200101", version=2))
    assert isinstance(first, Document) and isinstance(second, Document)
    assert first.pmid_version is None and "pmid_version" not in first.index_body()
    assert second.pmid_version == 2 and second.title == "Version 2."
    assert orjson.loads(second.index_json())["pmid_version"] == 2
    assert first.revision_version() == 20240601
    assert second.revision_version() == 10**8 + 20200101
    # Everything else is the version-1 mapping of the same fields.
    same = xml_record_to_document(record(9, title="Version 2.", revised="20200101"))
    assert {**same.index_body(), "pmid_version": 2} == second.index_body()
    # The worker's path, compiled where built, writes the version into the body too.
    data = record(9, title="Version 2.", revised="20200101", version=2).encode()
    assert pubmed_xml.xml_record_span_to_document(data, 0, len(data)) == second


def test_a_delete_citation_names_the_version_it_deletes(tmp_path: Path) -> None:
    path = write_xml(tmp_path / "u.xml", article_set([], deletes=[4], delete_version=3))
    (record,) = xml_records(path)
    assert xml_record_to_document(record.text) == Deletion(pmid="4", pmid_version=3)


@pytest.mark.parametrize(
    ("text", "reason", "pmid"),
    [
        ("<PubmedArticle><MedlineCitation><PMID>12</PMID>", "not well-formed XML", "12"),
        ("not xml at all", "not well-formed XML", None),
        (medline_citation(13).replace('<PMID Version="1">13</PMID>', ""), "no PMID", None),
        (medline_citation(14).replace("<ArticleTitle>", "<ArticleTitle>  "), None, None),
        (
            medline_citation(15)
            .replace("<ArticleTitle>", "<X>")
            .replace("</ArticleTitle>", "</X>"),
            None,  # no title at all: indexed without one, as PubMed has errata
            None,
        ),
        (medline_citation("1a6"), "digits only", "1a6"),
        ("<Other><PMID>5</PMID></Other>", "not a PubMed record: <Other>", None),
        ("<PubmedArticle><PubmedData/></PubmedArticle>", "no <MedlineCitation>", None),
        (delete_citation(["x9"]), "digits only", None),
        (medline_citation(16, version=0), "Version '0'", "16"),
        (pubmed_article(17).replace('Version="1"', 'Version="v2"'), "Version 'v2'", "17"),
        (pubmed_book_article(18, version=PMID_VERSION_MAX + 1), "from 1 to 32767", "18"),
        (delete_citation([19], version=0), "Version '0'", "19"),
        (delete_citation([1, 2]), "one PMID", None),
    ],
)
def test_bad_records_raise_record_errors(text: str, reason: str | None, pmid: str | None) -> None:
    if reason is None:  # leading blanks in a title are fine, and so is no title
        assert isinstance(xml_record_to_document(text), Document)
        return
    with pytest.raises(RecordError) as caught:
        xml_record_to_document(text)
    assert reason in caught.value.reason
    assert caught.value.pmid == pmid


MML = ' xmlns:mml="http://www.w3.org/1998/Math/MathML"'
#: A formula as PubMed's XML has them since 2018: pretty-printed MathML, its layout whitespace
#: between the elements.
VO2MAX = """<mml:math{declared}>
    <mml:msub>
        <mml:mrow>
            <mml:mover><mml:mrow><mml:mi>V</mml:mi></mml:mrow><mml:mo>.</mml:mo></mml:mover>
            <mml:mi>O</mml:mi>
        </mml:mrow>
        <mml:mrow>
            <mml:mn>2</mml:mn>
            <mml:mi>max</mml:mi>
        </mml:mrow>
    </mml:msub>
    <mml:mtext> in </mml:mtext>
    <mml:mi>runners</mml:mi>
    <mml:annotation encoding="application/x-tex">\\dot{{V}}O_2</mml:annotation>
</mml:math>"""


def _with_formulas(pmid: int, declared: str) -> str:
    formula = VO2MAX.format(declared=declared)
    return pubmed_article(pmid, title=f"Maximal oxygen uptake ({formula}) and lactate").replace(
        "the immune system.", f"the <i>immune</i> system: {formula}-based."
    )


@pytest.mark.parametrize("declared", [MML, ""], ids=["in-the-record", "by-the-dtd"])
def test_a_formula_reads_as_mathml_renders_it_wherever_its_prefix_is_declared(
    declared: str,
) -> None:
    # NLM's DTD fixes the mml prefix's namespace, so a file may declare it once or not at
    # all: a record taken alone must still be read, not dead-lettered as not well-formed.
    record = _with_formulas(31, declared).encode()
    document = pubmed_xml.xml_record_span_to_document(record, 0, len(record))
    assert isinstance(document, Document)
    assert document.title == "Maximal oxygen uptake (V.O2max in runners) and lactate"
    assert document.abstract == (
        "Intravenous immunoglobulin (IVIG) has several effects on the immune system: "
        "V.O2max in runners-based."
    )
    assert xml_record_to_document(record.decode()) == document


def test_another_undeclared_prefix_is_still_not_well_formed() -> None:
    text = pubmed_article(32).replace("<i>", "").replace("the immune", "the <x:y>immune</x:y>")
    with pytest.raises(RecordError) as caught:
        xml_record_to_document(text)
    assert "Namespace prefix x on y is not defined" in caught.value.reason
    assert caught.value.pmid == "32"


def test_the_pipeline_parses_xml_batches_as_the_xml_parser_does() -> None:
    records = xml_records(SAMPLE_XML)
    batch = BatchMessage(
        job_id="j", batch_id="j:0", source=str(SAMPLE_XML), format="pubmed-xml", records=records
    )
    parsed = parse_batch(PackedBatch.from_message(batch), max_record_bytes=2**21)
    assert not parsed.dead_letters
    expected = [xml_record_to_document(r.text) for r in records]
    assert [p.body for p in parsed.documents] == [
        d.index_json() for d in expected if isinstance(d, Document)
    ]


# --- splitting --------------------------------------------------------------------------------


class Trickle(io.RawIOBase):
    """A stream that returns at most ``size`` bytes a read, to cut tags across reads."""

    def __init__(self, data: bytes, size: int) -> None:
        self.data, self.size, self.pos = data, size, 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.size if n is None or n < 0 else min(n, self.size)
        chunk = self.data[self.pos : self.pos + n]
        self.pos += len(chunk)
        return chunk


TRICKY = (
    article_set(
        [
            "<!-- a comment with <PubmedArticle> inside -->",
            pubmed_article(1, title="Title with <![CDATA[<PubmedArticle> in CDATA]]> text."),
            pubmed_article(2, title="Ünïcödé títle, 日本語."),
            "<PubmedBookArticle><BookDocument><PMID>3</PMID>"
            "<ArticleTitle>Book</ArticleTitle></BookDocument></PubmedBookArticle>",
        ],
        deletes=[4, 5],
    )
).encode()


@pytest.mark.parametrize("size", [1, 7, 19, 20, 21, 4096, 1 << 20])
def test_byte_offsets_point_at_each_record_whatever_the_read_size(size: int) -> None:
    records = list(iter_xml_records(Trickle(TRICKY, size)))  # type: ignore[arg-type]
    starts = [b"<PubmedArticle>", b"<PubmedArticle>", b"<PubmedBookArticle>"]
    starts += [b"<DeleteCitation>"] * 2
    assert len(records) == len(starts)
    for record, start in zip(records, starts, strict=True):
        assert TRICKY[record.offset :].startswith(start), (size, record.offset)
    assert records[3].offset == records[4].offset
    assert "in CDATA" in records[0].text
    doc = xml_record_to_document(records[1].text)
    assert isinstance(doc, Document) and doc.title == "Ünïcödé títle, 日本語."


@pytest.mark.parametrize("name", ["tricky", "sample", "citation-set"])
def test_each_record_taken_is_the_element_lxml_reads_in_the_file(name: str) -> None:
    data = {
        "tricky": TRICKY,
        "sample": SAMPLE_XML.read_bytes(),
        "citation-set": article_set(
            [medline_citation(1), "<!-- <MedlineCitation> -->", medline_citation(2)],
            root="MedlineCitationSet",
        ).encode(),
    }[name]
    root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, remove_comments=True))
    expected = [
        etree.tostring(element, with_tail=False)
        for element in root
        if element.tag in ("PubmedArticle", "PubmedBookArticle", "MedlineCitation")
    ]
    taken = [
        etree.tostring(etree.fromstring(record.text.encode()))
        for record in iter_xml_records(io.BytesIO(data))  # type: ignore[arg-type]
        if not record.text.startswith("<DeleteCitation>")
    ]
    assert taken == expected and len(taken) >= 2


def test_medline_citation_set_files_plain_and_gzipped(tmp_path: Path) -> None:
    text = article_set(
        [medline_citation(10), medline_citation(11)], deletes=[12], root="MedlineCitationSet"
    )
    for name in ("set.xml", "set.xml.gz"):
        path = write_xml(tmp_path / name, text)
        records = xml_records(path)
        assert [r.text[:17] for r in records] == [
            "<MedlineCitation ",
            "<MedlineCitation ",
            "<DeleteCitation><",
        ]
        raw = text.encode()
        for record in records:
            # Offsets count bytes of the decompressed stream.
            assert raw[record.offset :].startswith(record.text[:16].encode())
        docs = [xml_record_to_document(r.text) for r in records]
        assert [d.pmid for d in docs] == ["10", "11", "12"]
        assert isinstance(docs[2], Deletion)


def test_a_medline_citation_inside_its_article_is_not_a_record_of_its_own(tmp_path: Path) -> None:
    path = write_xml(tmp_path / "a.xml", article_set([pubmed_article(1), pubmed_article(2)]))
    records = xml_records(path)
    assert [r.text[:15] for r in records] == ["<PubmedArticle>"] * 2


def test_a_file_cut_short_stops_with_a_clear_error_after_its_good_records(tmp_path: Path) -> None:
    text = article_set([pubmed_article(1), pubmed_article(2)])
    second = text.index("<PubmedArticle>", text.index("<PubmedArticle>") + 1)
    path = write_xml(tmp_path / "broken.xml", text[: second + 300])  # cut inside the second
    got = []
    with open_source(path) as stream, pytest.raises(XmlSourceError) as caught:
        for record in iter_xml_records(stream):
            got.append(record)
    assert len(got) == 1
    message = str(caught.value)
    assert str(path) in message and "ends inside the <PubmedArticle> record" in message
    assert f"begins at byte {len(text[:second].encode())}: it is cut short" in message


def test_a_broken_record_is_dead_lettered_and_the_rest_of_the_file_ingested(
    tmp_path: Path,
) -> None:
    broken = pubmed_article(2).replace("</ArticleTitle>", "</Title>")
    unclosed = pubmed_article(3).replace("</PubmedArticle>", "")
    path = write_xml(
        tmp_path / "b.xml", article_set([pubmed_article(1), broken, unclosed, pubmed_article(4)])
    )
    records = xml_records(path)
    assert [r.text[:15] for r in records] == ["<PubmedArticle>"] * 4
    assert records[1].text == broken and records[2].text == unclosed + "\n"
    batch = BatchMessage(
        job_id="j", batch_id="j:0", source=str(path), format="pubmed-xml", records=records
    )
    parsed = parse_batch(PackedBatch.from_message(batch), max_record_bytes=2**21)
    assert [p.pmid for p in parsed.documents] == ["1", "4"]
    assert [d.pmid for d in parsed.dead_letters] == ["2", "3"]
    assert all("not well-formed XML" in d.reason for d in parsed.dead_letters)
    assert [d.records[0].text for d in parsed.dead_letters] == [records[1].text, records[2].text]


def test_records_are_taken_as_the_file_has_them(tmp_path: Path) -> None:
    quoted = pubmed_article(1).replace("<PubmedArticle>", '<PubmedArticle note="a > b">')
    entity = pubmed_article(2, title="Caf&#233; &amp; cr&#xE8;me.")
    path = write_xml(
        tmp_path / "q.xml", article_set([quoted, entity, "<PubmedArticle/>"], deletes=[5])
    )
    records = xml_records(path)
    assert [r.text for r in records[:3]] == [quoted, entity, "<PubmedArticle/>"]
    doc = xml_record_to_document(records[1].text)
    assert isinstance(doc, Document) and doc.title == "Café & crème."
    assert records[3].text == '<DeleteCitation><PMID Version="1">5</PMID></DeleteCitation>'


def test_bytes_that_are_not_utf8_are_replaced(tmp_path: Path) -> None:
    data = article_set([pubmed_article(1, title="Bad TITLE byte.")]).encode()
    path = tmp_path / "u.xml"
    path.write_bytes(data.replace(b"TITLE", b"\xff"))
    (record,) = xml_records(path)
    doc = xml_record_to_document(record.text)
    assert isinstance(doc, Document) and doc.title == "Bad \ufffd byte."


@pytest.mark.parametrize("opening", ["<PubmedArticle>", '<PubmedArticle note="open>'])
def test_a_record_that_never_ends_is_not_held_past_the_limit(
    opening: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pubmed_xml, "MAX_HELD_RECORD_BYTES", 100_000)
    data = (pubmed_article(1) + opening + "words " * 50_000).encode()
    records = []
    with pytest.raises(XmlSourceError, match=r"begins at byte [0-9]+ runs past 100000 bytes"):
        for record in iter_xml_records(io.BytesIO(data)):  # type: ignore[arg-type]
            records.append(record)
    assert [r.offset for r in records] == [0]


def test_a_file_in_another_encoding_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin.xml"
    path.write_bytes(b'<?xml version="1.0" encoding="ISO-8859-1"?>\n<PubmedArticleSet/>')
    with open_source(path) as stream, pytest.raises(XmlSourceError, match="only UTF-8"):
        list(iter_xml_records(stream))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Endless(io.RawIOBase):
    """``count`` articles made on the fly: the input never sits in memory whole."""

    def __init__(self, count: int) -> None:
        self.parts = self._parts(count)
        self.buffer = b""

    @staticmethod
    def _parts(count: int) -> Iterator[bytes]:
        yield b'<?xml version="1.0"?>\n<PubmedArticleSet>\n'
        for pmid in range(1, count + 1):
            yield pubmed_article(pmid).encode() + b"\n"
        yield b"</PubmedArticleSet>\n"

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = 1 << 16 if n is None or n < 0 else n
        while len(self.buffer) < n:
            part = next(self.parts, None)
            if part is None:
                break
            self.buffer += part
        chunk, self.buffer = self.buffer[:n], self.buffer[n:]
        return chunk


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
def test_memory_stays_flat_however_long_the_file() -> None:
    count = 60_000  # about 100 MB of XML; kept whole as a tree it would take far more
    baseline = peak = 0
    for i, record in enumerate(iter_xml_records(Endless(count))):  # type: ignore[arg-type]
        if i == 2_000:
            baseline = _rss_bytes()
        elif i % 2_000 == 0:
            peak = max(peak, _rss_bytes())
        assert record.offset >= 0
    assert i == count - 1
    growth = peak - baseline
    assert growth < 40 * 1024 * 1024, f"memory grew by {growth / 1e6:.0f} MB"


# --- the producer -----------------------------------------------------------------------------


def test_sniff_and_enqueue_xml_files_as_pubmed_xml_batches(tmp_path: Path) -> None:
    path = write_xml(
        tmp_path / "b.xml.gz", article_set([pubmed_article(i) for i in range(1, 6)], deletes=[9])
    )
    with open_source(path) as stream:
        assert sniff_format(stream) == "pubmed-xml"
        assert len(list(iter_records(stream, "pubmed-xml"))) == 6
    settings = Settings(key_prefix="t")
    jobs = JobStore(fakeredis.FakeRedis(), settings)
    sent = []
    result = enqueue([str(path)], settings=settings, jobs=jobs, publish=sent.append, max_records=4)
    assert (result.records, result.batches) == (6, 2)
    assert {b.format for b in sent} == {"pubmed-xml"}
    assert sent[-1].records[-1].text.startswith("<DeleteCitation>")
