"""PubMed XML: stream ``PubmedArticleSet`` / ``MedlineCitationSet`` files into raw records, and
map one record onto the same :class:`~schemas.document.Document` as the MEDLINE text format.

Splitting (:func:`iter_xml_records`, in the producer): lxml ``iterparse`` over the (already
decompressed) stream, in constant memory -- each record element is serialised, then cleared
and removed from the tree with the siblings before it. Records are ``PubmedArticle``,
``PubmedBookArticle`` and top-level ``MedlineCitation`` elements; a ``DeleteCitation`` becomes
one record per PMID, ``<DeleteCitation><PMID ...>n</PMID></DeleteCitation>``.

Byte offsets are real: lxml reports none, so the stream is read through a scanner that notes
the offset of every record start tag (outside comments and CDATA) as lxml reads the bytes; the
n-th start event is the n-th tag found. Offsets count bytes of the decompressed stream, as for
MEDLINE text. Each ``DeleteCitation`` PMID carries the offset of its ``DeleteCitation``.

Mapping (:func:`xml_record_to_document`, in the worker): the XML is rendered as the MEDLINE
fields PubMed prints for the same citation (``DateRevised`` → ``LR``, ``ArticleDate`` →
``DEP``, structured abstracts as ``LABEL: text`` joined by spaces, ``CommentsCorrections`` →
``CON``/``CIN``/``EIN``/..., history → ``EDAT``/``MHDA``/``CRDT``/``PHST``, a composed ``SO``),
and those fields go through :func:`worker.documents.build_document`, the text format's own
mapping and validation. The same citation in both formats therefore gives the same document,
by construction; the tests hold both forms of a few rich citations. One thing only XML has: a
versioned citation's ``<PMID Version>`` (2 or more), kept as ``pmid_version``, which orders the
versions in the index (:meth:`~schemas.document.Document.revision_version`).
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Iterator
from typing import BinaryIO

from lxml import etree
from pydantic import ValidationError

from schemas.deletion import Deletion
from schemas.document import PMID_VERSION_MAX, Document
from schemas.messages import RawRecord
from worker.dates import MONTHS
from worker.documents import build_document
from worker.errors import MedlineIngestError, RecordError

log = logging.getLogger(__name__)

#: Elements that are records (a ``MedlineCitation`` inside a ``PubmedArticle`` is not one).
RECORD_TAGS = ("PubmedArticle", "PubmedBookArticle", "MedlineCitation", "DeleteCitation")
#: Bytes asked of the stream per read when lxml does not say.
READ_SIZE = 1 << 16
#: Longest match of :data:`_START` (``<PubmedBookArticle`` and the character after it).
_KEEP = 20
#: Record start tags, comments and CDATA sections (whose contents are skipped).
_START = re.compile(
    rb"<(?:(!--)|(!\[CDATA\[)|(PubmedArticle|PubmedBookArticle|MedlineCitation|DeleteCitation)"
    rb"(?=[\s/>]))"
)
#: Characters of a record quoted in an error message.
QUOTE_LIMIT = 80

#: ``CommentsCorrections`` RefType → MEDLINE tag (NLM's field descriptions).
COMMENT_TAGS = {
    "AssociatedDataset": "DDIN",
    "CommentIn": "CIN",
    "CommentOn": "CON",
    "CorrectedandRepublishedIn": "CRI",
    "CorrectedandRepublishedFrom": "CRF",
    "ErratumIn": "EIN",
    "ErratumFor": "EFR",
    "ExpressionOfConcernIn": "ECI",
    "ExpressionOfConcernFor": "ECF",
    "OriginalReportIn": "ORI",
    "PartialRetractionIn": "PRIN",
    "PartialRetractionOf": "PROF",
    "RepublishedFrom": "RPF",
    "RepublishedIn": "RPI",
    "RetractedandRepublishedFrom": "RRF",
    "RetractedandRepublishedIn": "RRI",
    "RetractionIn": "RIN",
    "RetractionOf": "ROF",
    "SummaryForPatientsIn": "SPIN",
    "UpdateIn": "UIN",
    "UpdateOf": "UOF",
}
#: RefTypes left out, as the MEDLINE format leaves them out: ``Cites`` is the reference list.
SKIPPED_REF_TYPES = frozenset({"Cites"})
#: ``PubMedPubDate`` statuses that give the EDAT, MHDA and CRDT fields.
STAMP_TAGS = (("pubmed", "EDAT"), ("medline", "MHDA"), ("entrez", "CRDT"))
#: Month numbers → the abbreviations MEDLINE prints.
MONTH_NAMES = {n: name.capitalize() for name, n in MONTHS.items() if len(name) == 3}

Fields = list[tuple[str, str]]


class XmlSourceError(MedlineIngestError):
    """A PubMed XML file is not well-formed: the producer stops there (records before the
    error are enqueued); the message says where."""


# --- splitting --------------------------------------------------------------------------------


class _OffsetScanner:
    """Wraps a byte stream for lxml and notes the offset of each record start tag it reads."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.starts: deque[tuple[str, int]] = deque()
        self._tail = b""
        self._tail_at = 0  # offset of _tail[0] in the stream
        self._skip_to: bytes | None = None  # end of the comment or CDATA being skipped

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size if size and size > 0 else READ_SIZE)
        self._scan(data)
        return data

    def _scan(self, data: bytes) -> None:
        buf = self._tail + data
        pos = 0
        while True:
            if self._skip_to is not None:
                end = buf.find(self._skip_to, pos)
                if end < 0:
                    pos = max(pos, len(buf) - len(self._skip_to) + 1)
                    break
                pos = end + len(self._skip_to)
                self._skip_to = None
                continue
            match = _START.search(buf, pos)
            if match is None:
                # Keep what could be the beginning of a tag cut by the end of the chunk.
                pos = max(pos, len(buf) - _KEEP)
                break
            pos = match.end()
            if match.group(1):
                self._skip_to = b"-->"
            elif match.group(2):
                self._skip_to = b"]]>"
            else:
                self.starts.append((match.group(3).decode(), self._tail_at + match.start()))
        self._tail = buf[pos:]
        self._tail_at += pos

    def take(self, tag: str) -> int | None:
        """Offset of the next start tag, which lxml just reported as ``tag``."""
        while self.starts:
            name, offset = self.starts.popleft()
            if name == tag:
                return offset
        return None


def iter_xml_records(stream: BinaryIO) -> Iterator[RawRecord]:
    """Raw records of a PubMed XML stream (already decompressed), with byte offsets.

    :raises XmlSourceError: the XML is not well-formed; records before the fault were yielded.
    """
    scanner = _OffsetScanner(stream)
    events = etree.iterparse(
        scanner,
        events=("start", "end"),
        tag=RECORD_TAGS,
        resolve_entities=False,
        no_network=True,
        remove_comments=True,
    )
    depth = 0
    offset = 0
    try:
        for event, elem in events:
            if event == "start":
                if depth == 0:
                    found = scanner.take(elem.tag)
                    if found is None:  # cannot happen unless the scanner lost track
                        log.warning("no byte offset for <%s>; using %d", elem.tag, offset)
                    else:
                        offset = found
                else:
                    scanner.take(elem.tag)
                depth += 1
                continue
            depth -= 1
            if depth:
                continue  # a MedlineCitation inside its PubmedArticle
            if elem.tag == "DeleteCitation":
                for pmid in elem.iterchildren("PMID"):
                    pmid.tail = None
                    text = etree.tostring(pmid, encoding="unicode")
                    yield RawRecord(offset=offset, text=f"<DeleteCitation>{text}</DeleteCitation>")
            else:
                yield RawRecord(
                    offset=offset, text=etree.tostring(elem, encoding="unicode", with_tail=False)
                )
            elem.clear(keep_tail=False)
            parent = elem.getparent()
            if parent is not None:
                while elem.getprevious() is not None:
                    del parent[0]
    except etree.XMLSyntaxError as exc:
        name = getattr(stream, "name", None)
        where = f"{name}: " if isinstance(name, str) else ""
        line, column = exc.position
        raise XmlSourceError(
            f"{where}not well-formed XML at line {line}, column {column}: {exc.msg}"
        ) from None


# --- mapping ----------------------------------------------------------------------------------


def _norm(text: str | None) -> str:
    return " ".join(text.split()) if text else ""


def _text(elem: etree._Element | None) -> str:
    """All the text of an element, inline markup (``<i>``, ``<sup>``...) flattened."""
    return _norm("".join(elem.itertext())) if elem is not None else ""


def _two(value: str) -> str:
    return value.zfill(2) if value.isdigit() else value


def _month_number(value: str) -> str:
    if value.isdigit():
        return value.zfill(2)
    number = MONTHS.get(value.lower())
    return f"{number:02d}" if number else value


def _compact_date(elem: etree._Element | None) -> str:
    """``<Year/><Month/><Day/>`` → ``YYYYMMDD`` (DCOM, LR, DEP)."""
    if elem is None or not elem.findtext("Year"):
        return ""
    year = _norm(elem.findtext("Year"))
    month = _month_number(_norm(elem.findtext("Month")) or "01")
    day = _two(_norm(elem.findtext("Day")) or "01")
    return f"{year}{month}{day}"


def _stamp(elem: etree._Element) -> str:
    """A ``PubMedPubDate`` → ``YYYY/MM/DD HH:MM``."""
    year = _norm(elem.findtext("Year"))
    month = _month_number(_norm(elem.findtext("Month")) or "01")
    day = _two(_norm(elem.findtext("Day")) or "01")
    hour = _two(_norm(elem.findtext("Hour")) or "00")
    minute = _two(_norm(elem.findtext("Minute")) or "00")
    return f"{year}/{month}/{day} {hour}:{minute}"


def _pub_date(elem: etree._Element | None) -> str:
    """``PubDate`` → the DP string: ``2003 Feb 15``, ``2003 Winter``, or ``MedlineDate`` as is."""
    if elem is None:
        return ""
    medline_date = _norm(elem.findtext("MedlineDate"))
    if medline_date:
        return medline_date
    parts = [_norm(elem.findtext("Year"))]
    month = _norm(elem.findtext("Month"))
    if month:
        parts.append(MONTH_NAMES.get(int(month), month) if month.isdigit() else month)
        parts.append(_norm(elem.findtext("Day")))
    else:
        parts.append(_norm(elem.findtext("Season")))
    return " ".join(p for p in parts if p)


def _date_words(compact: str) -> str:
    """``20030215`` → ``2003 Feb 15`` (the ``Epub`` date of SO)."""
    month = MONTH_NAMES.get(int(compact[4:6]), compact[4:6])
    return f"{compact[:4]} {month} {int(compact[6:])}"


def _abstract(elem: etree._Element | None) -> str:
    """Abstract text; a structured abstract's sections as ``LABEL: text`` joined by spaces."""
    if elem is None:
        return ""
    parts = []
    for section in elem.iterchildren("AbstractText"):
        text = _text(section)
        label = _norm(section.get("Label"))
        parts.append(f"{label}: {text}" if label and text else text or label)
    return " ".join(p for p in parts if p)


class _Fields:
    """Collects MEDLINE ``(tag, value)`` pairs, skipping empty values."""

    def __init__(self) -> None:
        self.items: Fields = []

    def add(self, tag: str, value: str | None) -> None:
        value = _norm(value)
        if value:
            self.items.append((tag, value))

    def people(self, elems: list[etree._Element], full: str, short: str, affiliation: str) -> None:
        """Authors (FAU/AU/AD/AUID, CN for a group) or investigators (FIR/IR/IRAD/AUID)."""
        for person in elems:
            last = _norm(person.findtext("LastName"))
            if not last:
                self.add("CN", person.findtext("CollectiveName"))
                continue
            fore = _norm(person.findtext("ForeName"))
            initials = _norm(person.findtext("Initials"))
            suffix = _norm(person.findtext("Suffix"))
            self.add(full, " ".join(p for p in (f"{last}, {fore}" if fore else last, suffix) if p))
            self.add(short, " ".join(p for p in (last, initials, suffix) if p))
            for info in person.iterchildren("AffiliationInfo"):
                self.add(affiliation, info.findtext("Affiliation"))
            for ident in person.iterchildren("Identifier"):
                source = _norm(ident.get("Source"))
                value = _text(ident)
                self.add("AUID", f"{source}: {value}" if source else value)

    def locations(self, parent: etree._Element) -> None:
        """LID lines from ``ELocationID``: ``value [doi]``, ``value [pii]``."""
        for location in parent.iterchildren("ELocationID"):
            kind = _norm(location.get("EIdType"))
            self.add("LID", f"{_text(location)} [{kind}]" if kind else _text(location))

    def abstract(self, abstract: etree._Element | None) -> None:
        """AB (sections labelled) and CI, its copyright line."""
        if abstract is not None:
            self.add("AB", _abstract(abstract))
            self.add("CI", abstract.findtext("CopyrightInformation"))

    def grants(self, parent: etree._Element) -> None:
        """GR lines: ``GrantID/Acronym/Agency/Country``, trailing empty parts left out."""
        for grant in parent.iterfind("GrantList/Grant"):
            parts = [_norm(grant.findtext(p)) for p in ("GrantID", "Acronym", "Agency", "Country")]
            while parts and not parts[-1]:
                parts.pop()
            self.add("GR", "/".join(parts))

    def keywords(self, parent: etree._Element) -> None:
        """OTO (the list's owner) then its OT lines, per ``KeywordList``."""
        for keywords in parent.iterchildren("KeywordList"):
            self.add("OTO", keywords.get("Owner"))
            for keyword in keywords.iterchildren("Keyword"):
                self.add("OT", _text(keyword))

    def history(self, history: etree._Element | None) -> None:
        """EDAT, MHDA, CRDT (from the pubmed, medline and entrez dates) then every PHST."""
        if history is None:
            return
        dates = [(_norm(d.get("PubStatus")), _stamp(d)) for d in history.iter("PubMedPubDate")]
        for status, tag in STAMP_TAGS:
            self.add(tag, next((stamp for s, stamp in dates if s == status), None))
        for status, stamp in dates:
            self.add("PHST", f"{stamp} [{status}]" if status else stamp)

    def article_ids(self, id_list: etree._Element | None) -> tuple[str | None, str | None]:
        """AID lines; returns the PMC id and the manuscript id, printed as PMC and MID."""
        pmc = mid = None
        if id_list is None:
            return pmc, mid
        for ident in id_list.iterchildren("ArticleId"):
            kind, value = _norm(ident.get("IdType")), _text(ident)
            if kind == "pubmed":
                continue
            if kind == "pmc":
                pmc = value
            elif kind == "mid":
                mid = value
            else:
                self.add("AID", f"{value} [{kind}]" if kind else value)
        return pmc, mid


def _source_line(fields: Fields) -> str:
    """The SO field as PubMed composes it: ``TA. DP;VI(IP):PG. doi: X. Epub Y M D.``"""
    first = {}
    for tag, value in fields:
        first.setdefault(tag, value)
    head = ". ".join(p for p in (first.get("TA"), first.get("DP")) if p)
    if not head:
        return ""
    where = first.get("VI", "")
    if first.get("IP"):
        where += f"({first['IP']})"
    if first.get("PG"):
        where += f":{first['PG']}"
    line = f"{head};{where}." if where else f"{head}."
    doi = next(
        (v[: -len(" [doi]")] for t, v in fields if t in ("LID", "AID") and v.endswith(" [doi]")),
        None,
    )
    if doi:
        line += f" doi: {doi}."
    if first.get("DEP"):
        line += f" Epub {_date_words(first['DEP'])}."
    return line


def citation_fields(citation: etree._Element, pubmed_data: etree._Element | None = None) -> Fields:
    """The MEDLINE fields of a ``MedlineCitation`` (and its ``PubmedData``), in the order
    PubMed prints them."""
    f = _Fields()
    article = citation.find("Article")
    if article is None:
        article = etree.Element("Article")
    journal = article.find("Journal")
    if journal is None:
        journal = etree.Element("Journal")
    issue = journal.find("JournalIssue")
    info = citation.find("MedlineJournalInfo")

    f.add("PMID", citation.findtext("PMID"))
    f.add("OWN", citation.get("Owner"))
    f.add("STAT", citation.get("Status"))
    f.add("DA", _compact_date(citation.find("DateCreated")))
    f.add("DCOM", _compact_date(citation.find("DateCompleted")))
    f.add("LR", _compact_date(citation.find("DateRevised")))
    for issn in journal.iterchildren("ISSN"):
        kind = _norm(issn.get("IssnType"))
        f.add("IS", f"{_text(issn)} ({kind})" if kind else _text(issn))
    if info is not None and info.findtext("ISSNLinking"):
        f.add("IS", f"{_norm(info.findtext('ISSNLinking'))} (Linking)")
    if issue is not None:
        f.add("VI", issue.findtext("Volume"))
        f.add("IP", issue.findtext("Issue"))
        f.add("DP", _pub_date(issue.find("PubDate")))
    f.add("TI", _text(article.find("ArticleTitle")))
    pages = _norm(article.findtext("Pagination/MedlinePgn"))
    if not pages:
        start, end = (_norm(article.findtext(f"Pagination/{p}")) for p in ("StartPage", "EndPage"))
        pages = f"{start}-{end}" if start and end else start
    f.add("PG", pages)
    f.locations(article)
    f.abstract(article.find("Abstract"))
    f.people(article.findall("AuthorList/Author"), "FAU", "AU", "AD")
    for language in article.iterchildren("Language"):
        f.add("LA", language.text)
    for bank in article.iterfind("DataBankList/DataBank"):
        name = _norm(bank.findtext("DataBankName"))
        for accession in bank.iterfind("AccessionNumberList/AccessionNumber"):
            f.add("SI", f"{name}/{_text(accession)}" if name else _text(accession))
    f.grants(article)
    for kind in article.iterfind("PublicationTypeList/PublicationType"):
        f.add("PT", kind.text)
    for date in article.iterchildren("ArticleDate"):
        if _norm(date.get("DateType") or "Electronic") == "Electronic":
            f.add("DEP", _compact_date(date))
    f.add("TT", _text(article.find("VernacularTitle")))
    if info is not None:
        f.add("PL", info.findtext("Country"))
        f.add("TA", info.findtext("MedlineTA"))
    f.add("JT", journal.findtext("Title"))
    if info is not None:
        f.add("JID", info.findtext("NlmUniqueID"))
    for chemical in citation.iterfind("ChemicalList/Chemical"):
        number = _norm(chemical.findtext("RegistryNumber"))
        name = _text(chemical.find("NameOfSubstance"))
        f.add("RN", f"{number} ({name})" if number else name)
    for supplement in citation.iterfind("SupplMeshList/SupplMeshName"):
        f.add("NM", _text(supplement))
    for subset in citation.iterchildren("CitationSubset"):
        f.add("SB", subset.text)
    f.add("COIS", _text(citation.find("CoiStatement")))
    for comment in citation.iterfind("CommentsCorrectionsList/CommentsCorrections"):
        ref_type = _norm(comment.get("RefType"))
        if ref_type in SKIPPED_REF_TYPES:
            continue
        ref = _norm(comment.findtext("RefSource"))
        pmid = _norm(comment.findtext("PMID"))
        f.add(COMMENT_TAGS.get(ref_type, ref_type or "CC"), f"{ref} PMID: {pmid}" if pmid else ref)
    for symbol in citation.iterfind("GeneSymbolList/GeneSymbol"):
        f.add("GS", symbol.text)
    for heading in citation.iterfind("MeshHeadingList/MeshHeading"):
        descriptor = heading.find("DescriptorName")
        if descriptor is None:
            continue
        names = [("*" if descriptor.get("MajorTopicYN") == "Y" else "") + _text(descriptor)]
        for qualifier in heading.iterchildren("QualifierName"):
            star = "*" if qualifier.get("MajorTopicYN") == "Y" else ""
            names.append(star + _text(qualifier))
        f.add("MH", "/".join(names))
    for subject in citation.iterfind("PersonalNameSubjectList/PersonalNameSubject"):
        last = _norm(subject.findtext("LastName"))
        fore, initials = _norm(subject.findtext("ForeName")), _norm(subject.findtext("Initials"))
        f.add("FPS", f"{last}, {fore}" if fore else last)
        f.add("PS", " ".join(p for p in (last, initials) if p))
    f.add("RF", citation.findtext("NumberOfReferences"))
    for other_id in citation.iterchildren("OtherID"):
        source = _norm(other_id.get("Source"))
        f.add("OID", f"{source}: {_text(other_id)}" if source else _text(other_id))
    f.keywords(citation)
    for note in citation.iterchildren("GeneralNote"):
        f.add("GN", _text(note))
    f.people(citation.findall("InvestigatorList/Investigator"), "FIR", "IR", "IRAD")
    for other in citation.iterchildren("OtherAbstract"):
        kind = _norm(other.get("Type"))
        text = _abstract(other)
        f.add("OAB", f"{kind}: {text}" if kind and text else text)
        f.add("OABL", other.get("Language"))
        f.add("OCI", other.findtext("CopyrightInformation"))
    for mission in citation.iterchildren("SpaceFlightMission"):
        f.add("SFM", mission.text)
    pmc = mid = None
    if pubmed_data is not None:
        f.history(pubmed_data.find("History"))
        pmc, mid = f.article_ids(pubmed_data.find("ArticleIdList"))
    f.add("PMC", pmc)
    f.add("MID", mid)
    if pubmed_data is not None:
        f.add("PST", pubmed_data.findtext("PublicationStatus"))
    f.add("SO", _source_line(f.items))
    return f.items


def book_fields(book: etree._Element) -> Fields:
    """The MEDLINE fields of a ``PubmedBookArticle`` (book or chapter), as PubMed prints them."""
    f = _Fields()
    document = book.find("BookDocument")
    if document is None:
        document = etree.Element("BookDocument")
    about = document.find("Book")
    if about is None:
        about = etree.Element("Book")
    data = book.find("PubmedBookData")
    f.add("PMID", document.findtext("PMID"))
    f.add("DRDT", _compact_date(document.find("DateRevised")))
    f.add("CTDT", _compact_date(document.find("ContributionDate")))
    publisher = about.find("Publisher")
    if publisher is not None:
        f.add("PB", publisher.findtext("PublisherName"))
    f.add("DP", _pub_date(about.find("PubDate")))
    f.add("TI", _text(document.find("ArticleTitle")))
    f.add("BTI", _text(about.find("BookTitle")))
    f.add("CTI", _text(about.find("CollectionTitle")))
    f.add("VTI", _text(about.find("VolumeTitle")))
    f.add("EN", about.findtext("Edition"))
    f.locations(document)
    f.abstract(document.find("Abstract"))
    for editors in about.iterfind("AuthorList[@Type='editors']"):
        for editor in editors.iterchildren("Author"):
            last, fore = _norm(editor.findtext("LastName")), _norm(editor.findtext("ForeName"))
            f.add("FED", f"{last}, {fore}" if fore else last)
            f.add("ED", " ".join(p for p in (last, _norm(editor.findtext("Initials"))) if p))
    for authors in document.iterchildren("AuthorList"):
        if authors.get("Type", "authors") == "authors":
            f.people(authors.findall("Author"), "FAU", "AU", "AD")
    for language in document.iterchildren("Language"):
        f.add("LA", language.text)
    f.grants(document)
    for kind in document.iterfind("PublicationType"):
        f.add("PT", kind.text)
    if publisher is not None:
        f.add("PL", publisher.findtext("PublisherLocation"))
    f.keywords(document)
    for isbn in about.iterchildren("Isbn"):
        f.add("ISBN", isbn.text)
    if data is not None:
        f.history(data.find("History"))
    f.article_ids(document.find("ArticleIdList"))
    if data is not None:
        f.article_ids(data.find("ArticleIdList"))
        f.add("PST", data.findtext("PublicationStatus"))
    return f.items


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return text[:QUOTE_LIMIT] + ("..." if len(text) > QUOTE_LIMIT else "")


_PMID_IN_TEXT = re.compile(r"<PMID[^>]*>\s*([0-9]+)\s*</PMID>")


def _pmid_version(pmid: etree._Element | None, number: str | None) -> int:
    """The ``Version`` attribute of a PMID element (NLM's DTD requires it; 1 when missing).

    :param number: the PMID, for the error.
    :raises RecordError: it is not a whole number from 1 to ``PMID_VERSION_MAX``.
    """
    raw = _norm(pmid.get("Version")) if pmid is not None else ""
    if not raw:
        return 1
    if raw.isascii() and raw.isdigit() and 1 <= int(raw) <= PMID_VERSION_MAX:
        return int(raw)
    message = f"must be a whole number from 1 to {PMID_VERSION_MAX}"
    raise RecordError(
        f"PMID {number} has Version {raw[:40]!r}: it {message}",
        [{"field": "pmid_version", "message": message, "value": raw[:120]}],
        pmid=number,
    )


def _deletion(root: etree._Element) -> Deletion:
    elements = list(root.iterchildren("PMID"))
    if len(elements) != 1:
        raise RecordError(
            f"a DeleteCitation record must hold one PMID, this one holds {len(elements)}"
        )
    pmid = _text(elements[0])
    try:
        return Deletion(pmid=pmid, pmid_version=_pmid_version(elements[0], pmid))
    except ValidationError:
        raise RecordError(
            f"DeleteCitation PMID {pmid!r} must be digits only",
            [{"field": "pmid", "message": "must be digits only", "value": pmid[:120]}],
        ) from None


def _parse(text: str) -> etree._Element:
    # A parser per call: lxml parsers must not be shared between threads (threads pool).
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, remove_comments=True
    )
    try:
        return etree.fromstring(text.encode("utf-8", "surrogatepass"), parser)
    except (etree.XMLSyntaxError, ValueError) as exc:
        found = _PMID_IN_TEXT.search(text)
        raise RecordError(
            f"not well-formed XML: {exc}", pmid=found.group(1) if found else None
        ) from None


def xml_record_to_document(text: str) -> Document | Deletion:
    """Map one PubMed XML record onto the document model (or a deletion).

    :raises RecordError: the text is not well-formed XML, not a PubMed record, or not a valid
        document (no PMID, no title...); ``pmid`` is set when it could be read.
    """
    root = _parse(text)
    if root.tag == "DeleteCitation":
        return _deletion(root)
    fields, pmid = _record_fields(root)
    if not fields or fields[0][0] != "PMID":
        raise RecordError(
            f"<{root.tag}> has no PMID",
            [{"field": "pmid", "message": "is required but the record has none", "value": None}],
        )
    document = build_document(fields)
    version = _pmid_version(pmid, document.pmid)
    if version == 1:
        return document
    # Rare (a few journals version their articles), so validated a second time rather than
    # given a field the MEDLINE text form, which has no version, would need too.
    return Document.from_body({**document.index_body(), "pmid_version": version})


def xml_record_span_to_document(data: bytes, start: int, end: int) -> Document | Deletion:
    """:func:`xml_record_to_document` for the record ``data[start:end]``, UTF-8 as a packed
    batch holds it (invalid bytes replaced)."""
    return xml_record_to_document(data[start:end].decode("utf-8", "replace"))


def _record_fields(root: etree._Element) -> tuple[Fields, etree._Element | None]:
    """A record's MEDLINE fields and its own PMID element (whose ``Version`` the fields do
    not carry). :raises RecordError: not a citation."""
    if root.tag == "PubmedArticle":
        citation = root.find("MedlineCitation")
        if citation is None:
            raise RecordError("<PubmedArticle> has no <MedlineCitation>")
        return citation_fields(citation, root.find("PubmedData")), citation.find("PMID")
    if root.tag == "MedlineCitation":
        return citation_fields(root), root.find("PMID")
    if root.tag == "PubmedBookArticle":
        return book_fields(root), root.find("BookDocument/PMID")
    text = etree.tostring(root, encoding="unicode")
    raise RecordError(f"not a PubMed record: <{root.tag}> in {_quote(text)!r}")


def xml_record_to_fields(text: str) -> Fields:
    """The MEDLINE fields of one XML record, e.g. to print it with
    :func:`worker.medline_text.format_record`. :raises RecordError: not a citation."""
    return _record_fields(_parse(text))[0]
