"""PubMed XML: stream ``PubmedArticleSet`` / ``MedlineCitationSet`` files into raw records, and
map one record onto the same :class:`~schemas.document.Document` as the MEDLINE text format.

Splitting (:func:`iter_xml_record_bytes`, in the producer): the (already decompressed) stream
is scanned for record elements by their tags, outside comments and CDATA, in constant memory,
and each is taken as the file has it -- the worker parses it, so the producer does not build a
tree it would throw away (that took most of the producer's time). Records are
``PubmedArticle``, ``PubmedBookArticle`` and top-level ``MedlineCitation`` elements; a
``DeleteCitation`` becomes one record per PMID, ``<DeleteCitation><PMID ...>n</PMID>
</DeleteCitation>``. Offsets count bytes of the decompressed stream, as for MEDLINE text.

Mapping (:func:`xml_record_to_document`, in the worker): the XML is rendered as the MEDLINE
fields PubMed prints for the same citation (``DateRevised`` → ``LR``, ``ArticleDate`` →
``DEP``, structured abstracts as ``LABEL: text`` joined by spaces, ``CommentsCorrections`` →
``CON``/``CIN``/``EIN``/..., history → ``EDAT``/``MHDA``/``CRDT``/``PHST``, a composed ``SO``),
and those fields go through :func:`worker.documents.build_document`, the text format's own
mapping and validation. The same citation in both formats therefore gives the same document,
by construction; the tests hold both forms of a few rich citations. The compiled parser
(:mod:`worker.native`) maps the records the producer writes the same way, and leaves every
other record to this module (:func:`xml_record_span_to_document`). One thing only XML has: a
versioned citation's ``<PMID Version>`` (2 or more), kept as ``pmid_version``, which orders the
versions in the index (:meth:`~schemas.document.Document.revision_version`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from functools import cache
from typing import Any, BinaryIO

from lxml import etree
from pydantic import ValidationError

from schemas.deletion import Deletion
from schemas.document import PMID_VERSION_MAX, Document
from schemas.messages import RawRecord
from worker import native
from worker.dates import MONTHS
from worker.documents import build_document, compiled_parser, document_from_json
from worker.errors import MedlineIngestError, RecordError

#: MathML's namespace, which NLM's DTD fixes for the ``mml`` prefix of formulas in titles,
#: abstracts and keywords (since June 2018).
MATHML_NAMESPACE = "http://www.w3.org/1998/Math/MathML"
MATH_TAG = f"{{{MATHML_NAMESPACE}}}math"
_MTEXT_TAG = f"{{{MATHML_NAMESPACE}}}mtext"
_MATH_SKIPPED = frozenset(
    f"{{{MATHML_NAMESPACE}}}{name}" for name in ("annotation", "annotation-xml")
)

#: Elements that are records (a ``MedlineCitation`` inside a ``PubmedArticle`` is not one).
RECORD_TAGS = ("PubmedArticle", "PubmedBookArticle", "MedlineCitation", "DeleteCitation")
#: Bytes asked of the stream per read.
READ_SIZE = 1 << 16
#: Longest match of :data:`_START` and ``_INSIDE`` (``</PubmedBookArticle`` and the
#: character after it), kept when a chunk ends without one.
_KEEP = 24
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
    """A PubMed XML file cannot be read on: it is cut short, a record never ends, or it is
    not UTF-8. The producer stops there (records before are enqueued); the message says
    where. A single record that is not well-formed is not this: it is dead-lettered."""


# --- splitting --------------------------------------------------------------------------------

#: Inside a record: a comment or CDATA section (skipped), or a start or end tag of a record
#: element.
_INSIDE = re.compile(
    rb"<(?:(!--)|(!\[CDATA\[)|(/?)(PubmedArticle|PubmedBookArticle|MedlineCitation|DeleteCitation)"
    rb"(?=[\s/>]))"
)
#: The rest of a start tag, to its ``>``: attribute values are quoted and may hold ``>``.
_TAG_REST = re.compile(rb"""(?:[^>"']|"[^"]*"|'[^']*')*>""")
#: An XML declaration's encoding.
_ENCODING = re.compile(rb"""\A(?:\xef\xbb\xbf)?\s*<\?xml[^>]*?encoding\s*=\s*["']([^"']*)["']""")
#: Largest record the producer holds while looking for its end tag: far above any citation
#: (under 1 MB), it bounds the memory a file without end tags can take.
MAX_HELD_RECORD_BYTES = 64 << 20


def _cut_short(where: str, what: str, offset: int) -> XmlSourceError:
    return XmlSourceError(
        f"{where}the file ends inside {what} that begins at byte {offset}: it is cut short"
    )


def _too_long(where: str, what: str, offset: int) -> XmlSourceError:
    return XmlSourceError(
        f"{where}{what} that begins at byte {offset} runs past {MAX_HELD_RECORD_BYTES} bytes "
        "without its end"
    )


def iter_xml_record_bytes(stream: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """Raw records of a PubMed XML stream (already decompressed), as ``(byte offset, UTF-8
    bytes)``: each record element exactly as the file has it (invalid UTF-8 replaced), a
    ``DeleteCitation`` as one record per PMID.

    The stream is scanned, not parsed: records are found by their start and end tags (outside
    comments and CDATA), in memory bounded by the largest record. Whether a record is
    well-formed is the worker's to find out, per record, so one broken record is
    dead-lettered with its text and the rest of the file is ingested. A record whose end tag
    never comes before the next record begins is yielded as far as it goes (and
    dead-lettered).

    :raises XmlSourceError: the file ends inside a record, comment or CDATA section (cut
        short), a record runs past :data:`MAX_HELD_RECORD_BYTES`, or the file declares an
        encoding other than UTF-8 (NLM writes UTF-8); records before were yielded.
    """
    name = getattr(stream, "name", None)
    where = f"{name}: " if isinstance(name, str) else ""
    buf = b""
    base = 0  # offset of buf[0] in the stream
    pos = 0
    ended = False

    def more() -> bool:
        nonlocal buf, ended
        chunk = b"" if ended else stream.read(READ_SIZE)
        ended = not chunk
        buf += chunk
        return not ended

    def skip(marker: bytes, at: int, what: str) -> int:
        """The position after ``marker``, searched from ``at``, reading on as needed."""
        end = buf.find(marker, at)
        while end < 0:
            if not more():
                raise _cut_short(where, what, base + at)
            end = buf.find(marker, max(at, len(buf) - READ_SIZE - len(marker)))
        return end + len(marker)

    while len(buf) < READ_SIZE and more():  # enough to hold the XML declaration
        pass
    declared = _ENCODING.match(buf)
    if declared and declared.group(1).lower().replace(b"-", b"") != b"utf8":
        encoding = declared.group(1).decode("ascii", "replace")
        raise XmlSourceError(f"{where}declares encoding {encoding!r}: only UTF-8 XML is read")
    while True:
        if pos > READ_SIZE:  # what was scanned is done with
            buf, base, pos = buf[pos:], base + pos, 0
        found = _START.search(buf, pos)
        if found is None:
            pos = max(pos, len(buf) - _KEEP)  # a start tag may be cut by the chunk's end
            if not more():
                return
            continue
        if not found.group(3):  # a comment or CDATA section between records
            comment = bool(found.group(1))
            what = "a comment" if comment else "a CDATA section"
            pos = skip(b"-->" if comment else b"]]>", found.end(), what)
            continue
        tag, start = found.group(3).decode(), found.start()
        what = f"the <{tag}> record"
        rest = _TAG_REST.match(buf, found.end())
        while rest is None:  # the start tag is cut by the chunk's end, or a quote is open
            if len(buf) - start > MAX_HELD_RECORD_BYTES:
                raise _too_long(where, what, base + start)
            if not more():
                raise _cut_short(where, what, base + start)
            rest = _TAG_REST.match(buf, found.end())
        end = rest.end() if buf[rest.end() - 2 : rest.end() - 1] == b"/" else None
        scan = rest.end()
        if end is None:
            end = _plain_end(buf, scan, tag)
        while end is None:
            inside = _INSIDE.search(buf, scan)
            if inside is None:
                if len(buf) - start > MAX_HELD_RECORD_BYTES:
                    raise _too_long(where, what, base + start)
                scan = max(scan, len(buf) - _KEEP)
                if not more():
                    raise _cut_short(where, what, base + start)
                continue
            if inside.group(1) or inside.group(2):
                comment = bool(inside.group(1))
                scan = skip(b"-->" if comment else b"]]>", inside.end(), what)
                continue
            closing, inner = inside.group(3), inside.group(4).decode()
            if closing and inner == tag:
                end = skip(b">", inside.end(), what)
            elif not closing and not (tag == "PubmedArticle" and inner == "MedlineCitation"):
                end = inside.start()  # the next record begins: this one is broken
            else:
                scan = inside.end()
        record = _utf8(buf[start:end])
        pos = end
        if tag == "DeleteCitation":
            for deletion in _deletions(record):
                yield base + start, deletion
        else:
            yield base + start, record


#: What sends a record to the careful scan: markup that may hide tags, and the start of a
#: record (a ``MedlineCitation`` only outside a ``PubmedArticle``).
_SUSPECT = (b"<!--", b"<![CDATA[", b"<PubmedArticle", b"<PubmedBookArticle", b"<DeleteCitation")
_SUSPECT_IN = {
    "PubmedArticle": _SUSPECT,
    **{tag: (*_SUSPECT, b"<MedlineCitation") for tag in RECORD_TAGS if tag != "PubmedArticle"},
}


def _plain_end(buf: bytes, scan: int, tag: str) -> int | None:
    """The end of the record ``tag`` whose content starts at ``scan``, found with a few
    byte searches, when nothing before its end tag needs the careful scan (the records NLM
    writes); None otherwise, or when the end tag is not in ``buf`` yet."""
    close = buf.find(b"</" + tag.encode(), scan)
    if close < 0:
        return None
    after = close + len(tag) + 2
    if after >= len(buf) or buf[after] not in b" \t\r\n>":
        return None
    if any(buf.find(suspect, scan, close) >= 0 for suspect in _SUSPECT_IN[tag]):
        return None
    end = buf.find(b">", after)
    return end + 1 if end >= 0 else None


def _utf8(raw: bytes) -> bytes:
    """``raw`` if it is UTF-8, else its text with invalid bytes replaced, as UTF-8."""
    if not raw.isascii():
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("utf-8", "replace").encode("utf-8")
    return raw


def _deletions(record: bytes) -> list[bytes]:
    """One ``<DeleteCitation>`` per PMID of a ``DeleteCitation`` element; the element as it is
    if it is not well-formed (the worker dead-letters it)."""
    try:
        root = _parse_bytes(record)
    except (etree.XMLSyntaxError, ValueError):
        return [record]
    deletions = []
    for pmid in root.iterchildren("PMID"):
        pmid.tail = None
        text = etree.tostring(pmid, encoding="unicode")
        deletions.append(f"<DeleteCitation>{text}</DeleteCitation>".encode())
    return deletions or [record]


def iter_xml_records(stream: BinaryIO) -> Iterator[RawRecord]:
    """:func:`iter_xml_record_bytes` as raw records (text as str).

    :raises XmlSourceError: as :func:`iter_xml_record_bytes`.
    """
    for offset, record in iter_xml_record_bytes(stream):
        yield RawRecord(offset=offset, text=record.decode("utf-8"))


# --- mapping ----------------------------------------------------------------------------------
#
# Children are looked up through maps built in one pass over an element (:func:`_kids`,
# :func:`_texts`), not with lxml's ``find``/``findtext``: each of those costs about as much as
# reading every child of a small element, and a citation needs a few hundred lookups (five per
# author, per history date...). The lookups below mean exactly what the ElementPath calls
# they replace meant: first child of a tag, its ``.text``, all children of a path in order.

#: An element's children by tag, in document order.
Kids = dict[object, list[etree._Element]]
_NONE: list[etree._Element] = []


def _kids(elem: etree._Element | None) -> Kids:
    """The children of ``elem`` by tag, in order (nothing for None)."""
    kids: Kids = {}
    if elem is not None:
        for child in elem:
            found = kids.get(child.tag)
            if found is None:
                kids[child.tag] = [child]
            else:
                found.append(child)
    return kids


def _texts(elem: etree._Element) -> dict[object, str | None]:
    """The ``.text`` of the first child of each tag: ``findtext`` for every tag at once."""
    texts: dict[object, str | None] = {}
    for child in elem:
        if child.tag not in texts:
            texts[child.tag] = child.text
    return texts


def _first(kids: Kids, tag: str) -> etree._Element | None:
    found = kids.get(tag)
    return found[0] if found else None


def _first_text(kids: Kids, tag: str) -> str | None:
    """``findtext(tag)``: the first child's ``.text`` ('' when it has none), None without one."""
    found = kids.get(tag)
    return (found[0].text or "") if found else None


def _path(kids: Kids, parent: str, child: str) -> Iterator[etree._Element]:
    """``iterfind("parent/child")``: every ``child`` of every ``parent``, in order."""
    for elem in kids.get(parent, _NONE):
        yield from elem.iterchildren(child)


def _norm(text: str | None) -> str:
    return " ".join(text.split()) if text else ""


def _text(elem: etree._Element | None) -> str:
    """All the text of an element, inline markup (``<i>``, ``<sup>``...) flattened, and a
    formula as MathML reads (:func:`_math_text`)."""
    if elem is None:
        return ""
    if len(elem) and next(elem.iter(MATH_TAG), None) is not None:
        return _norm("".join(_text_parts(elem)))
    return _norm("".join(elem.itertext()))


def _text_parts(elem: etree._Element) -> Iterator[str]:
    yield elem.text or ""
    for child in elem:
        if child.tag == MATH_TAG:
            yield _math_text(child)
        elif isinstance(child.tag, str):
            yield from _text_parts(child)
        yield child.tail or ""


def _math_text(node: etree._Element) -> str:
    """A MathML formula as text: its tokens in order, each trimmed and none spaced apart, as
    MathML renders them (whitespace between its elements is layout, not content), so that
    ``<mml:mi>V</mml:mi> <mml:mi>O</mml:mi> <mml:mn>2</mml:mn>`` reads ``VO2``; words in an
    ``mtext`` keep their spaces. Annotations (a TeX source...) are not part of the formula."""
    return "".join(_math_parts(node))


def _math_parts(node: etree._Element) -> Iterator[str]:
    text = node.text or ""
    yield text if node.tag == _MTEXT_TAG else text.strip()
    for child in node:
        if isinstance(child.tag, str) and child.tag not in _MATH_SKIPPED:
            yield from _math_parts(child)
        yield (child.tail or "").strip()


def _two(value: str) -> str:
    return value.zfill(2) if value.isdigit() else value


def _month_number(value: str) -> str:
    if value.isdigit():
        return value.zfill(2)
    number = MONTHS.get(value.lower())
    return f"{number:02d}" if number else value


def _compact_date(elem: etree._Element | None) -> str:
    """``<Year/><Month/><Day/>`` → ``YYYYMMDD`` (DCOM, LR, DEP)."""
    if elem is None:
        return ""
    texts = _texts(elem)
    if not texts.get("Year"):
        return ""
    year = _norm(texts.get("Year"))
    month = _month_number(_norm(texts.get("Month")) or "01")
    day = _two(_norm(texts.get("Day")) or "01")
    return f"{year}{month}{day}"


def _stamp(elem: etree._Element) -> str:
    """A ``PubMedPubDate`` → ``YYYY/MM/DD HH:MM``."""
    texts = _texts(elem)
    year = _norm(texts.get("Year"))
    month = _month_number(_norm(texts.get("Month")) or "01")
    day = _two(_norm(texts.get("Day")) or "01")
    hour = _two(_norm(texts.get("Hour")) or "00")
    minute = _two(_norm(texts.get("Minute")) or "00")
    return f"{year}/{month}/{day} {hour}:{minute}"


def _pub_date(elem: etree._Element | None) -> str:
    """``PubDate`` → the DP string: ``2003 Feb 15``, ``2003 Winter``, or ``MedlineDate`` as is."""
    if elem is None:
        return ""
    texts = _texts(elem)
    medline_date = _norm(texts.get("MedlineDate"))
    if medline_date:
        return medline_date
    parts = [_norm(texts.get("Year"))]
    month = _norm(texts.get("Month"))
    if month:
        parts.append(MONTH_NAMES.get(int(month), month) if month.isdigit() else month)
        parts.append(_norm(texts.get("Day")))
    else:
        parts.append(_norm(texts.get("Season")))
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

    def people(
        self, elems: Iterable[etree._Element], full: str, short: str, affiliation: str
    ) -> None:
        """Authors (FAU/AU/AD/AUID, CN for a group) or investigators (FIR/IR/IRAD/AUID)."""
        for person in elems:
            texts: dict[object, str | None] = {}
            affiliations: list[etree._Element] = []
            identifiers: list[etree._Element] = []
            for child in person:
                tag = child.tag
                if tag == "AffiliationInfo":
                    affiliations.append(child)
                elif tag == "Identifier":
                    identifiers.append(child)
                elif tag not in texts:
                    texts[tag] = child.text
            last = _norm(texts.get("LastName"))
            if not last:
                self.add("CN", texts.get("CollectiveName"))
                continue
            fore = _norm(texts.get("ForeName"))
            initials = _norm(texts.get("Initials"))
            suffix = _norm(texts.get("Suffix"))
            self.add(full, " ".join(p for p in (f"{last}, {fore}" if fore else last, suffix) if p))
            self.add(short, " ".join(p for p in (last, initials, suffix) if p))
            for info in affiliations:
                self.add(affiliation, _texts(info).get("Affiliation"))
            for ident in identifiers:
                source = _norm(ident.get("Source"))
                value = _text(ident)
                self.add("AUID", f"{source}: {value}" if source else value)

    def locations(self, kids: Kids) -> None:
        """LID lines from ``ELocationID``: ``value [doi]``, ``value [pii]``."""
        for location in kids.get("ELocationID", _NONE):
            kind = _norm(location.get("EIdType"))
            self.add("LID", f"{_text(location)} [{kind}]" if kind else _text(location))

    def abstract(self, abstract: etree._Element | None) -> None:
        """AB (sections labelled) and CI, its copyright line."""
        if abstract is not None:
            self.add("AB", _abstract(abstract))
            self.add("CI", abstract.findtext("CopyrightInformation"))

    def grants(self, kids: Kids) -> None:
        """GR lines: ``GrantID/Acronym/Agency/Country``, trailing empty parts left out."""
        for grant in _path(kids, "GrantList", "Grant"):
            texts = _texts(grant)
            parts = [_norm(texts.get(p)) for p in ("GrantID", "Acronym", "Agency", "Country")]
            while parts and not parts[-1]:
                parts.pop()
            self.add("GR", "/".join(parts))

    def keywords(self, kids: Kids) -> None:
        """OTO (the list's owner) then its OT lines, per ``KeywordList``."""
        for keywords in kids.get("KeywordList", _NONE):
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
    c = _kids(citation)
    a = _kids(_first(c, "Article"))
    j = _kids(_first(a, "Journal"))
    issue = _first(j, "JournalIssue")
    info_element = _first(c, "MedlineJournalInfo")
    info = _texts(info_element) if info_element is not None else None

    f.add("PMID", _first_text(c, "PMID"))
    f.add("OWN", citation.get("Owner"))
    f.add("STAT", citation.get("Status"))
    f.add("DA", _compact_date(_first(c, "DateCreated")))
    f.add("DCOM", _compact_date(_first(c, "DateCompleted")))
    f.add("LR", _compact_date(_first(c, "DateRevised")))
    for issn in j.get("ISSN", _NONE):
        kind = _norm(issn.get("IssnType"))
        f.add("IS", f"{_text(issn)} ({kind})" if kind else _text(issn))
    if info is not None and info.get("ISSNLinking"):
        f.add("IS", f"{_norm(info.get('ISSNLinking'))} (Linking)")
    if issue is not None:
        i = _kids(issue)
        f.add("VI", _first_text(i, "Volume"))
        f.add("IP", _first_text(i, "Issue"))
        f.add("DP", _pub_date(_first(i, "PubDate")))
    f.add("TI", _text(_first(a, "ArticleTitle")))
    pagination = [_texts(p) for p in a.get("Pagination", _NONE)]
    pages = _norm(_first_path_text(pagination, "MedlinePgn"))
    if not pages:
        start, end = (_norm(_first_path_text(pagination, p)) for p in ("StartPage", "EndPage"))
        pages = f"{start}-{end}" if start and end else start
    f.add("PG", pages)
    f.locations(a)
    f.abstract(_first(a, "Abstract"))
    f.people(_path(a, "AuthorList", "Author"), "FAU", "AU", "AD")
    for language in a.get("Language", _NONE):
        f.add("LA", language.text)
    for bank in _path(a, "DataBankList", "DataBank"):
        name = _norm(bank.findtext("DataBankName"))
        for accession in bank.iterfind("AccessionNumberList/AccessionNumber"):
            f.add("SI", f"{name}/{_text(accession)}" if name else _text(accession))
    f.grants(a)
    for kind in _path(a, "PublicationTypeList", "PublicationType"):
        f.add("PT", kind.text)
    for date in a.get("ArticleDate", _NONE):
        if _norm(date.get("DateType") or "Electronic") == "Electronic":
            f.add("DEP", _compact_date(date))
    f.add("TT", _text(_first(a, "VernacularTitle")))
    if info is not None:
        f.add("PL", info.get("Country"))
        f.add("TA", info.get("MedlineTA"))
    f.add("JT", _first_text(j, "Title"))
    if info is not None:
        f.add("JID", info.get("NlmUniqueID"))
    for chemical in _path(c, "ChemicalList", "Chemical"):
        number = _norm(chemical.findtext("RegistryNumber"))
        name = _text(chemical.find("NameOfSubstance"))
        f.add("RN", f"{number} ({name})" if number else name)
    for supplement in _path(c, "SupplMeshList", "SupplMeshName"):
        f.add("NM", _text(supplement))
    for subset in c.get("CitationSubset", _NONE):
        f.add("SB", subset.text)
    f.add("COIS", _text(_first(c, "CoiStatement")))
    for comment in _path(c, "CommentsCorrectionsList", "CommentsCorrections"):
        ref_type = _norm(comment.get("RefType"))
        if ref_type in SKIPPED_REF_TYPES:
            continue
        texts = _texts(comment)
        ref = _norm(texts.get("RefSource"))
        pmid = _norm(texts.get("PMID"))
        f.add(COMMENT_TAGS.get(ref_type, ref_type or "CC"), f"{ref} PMID: {pmid}" if pmid else ref)
    for symbol in _path(c, "GeneSymbolList", "GeneSymbol"):
        f.add("GS", symbol.text)
    for heading in _path(c, "MeshHeadingList", "MeshHeading"):
        f.add("MH", _mesh_heading(heading))
    for subject in _path(c, "PersonalNameSubjectList", "PersonalNameSubject"):
        texts = _texts(subject)
        last = _norm(texts.get("LastName"))
        fore, initials = _norm(texts.get("ForeName")), _norm(texts.get("Initials"))
        f.add("FPS", f"{last}, {fore}" if fore else last)
        f.add("PS", " ".join(p for p in (last, initials) if p))
    f.add("RF", _first_text(c, "NumberOfReferences"))
    for other_id in c.get("OtherID", _NONE):
        source = _norm(other_id.get("Source"))
        f.add("OID", f"{source}: {_text(other_id)}" if source else _text(other_id))
    f.keywords(c)
    for note in c.get("GeneralNote", _NONE):
        f.add("GN", _text(note))
    f.people(_path(c, "InvestigatorList", "Investigator"), "FIR", "IR", "IRAD")
    for other in c.get("OtherAbstract", _NONE):
        kind = _norm(other.get("Type"))
        text = _abstract(other)
        f.add("OAB", f"{kind}: {text}" if kind and text else text)
        f.add("OABL", other.get("Language"))
        f.add("OCI", other.findtext("CopyrightInformation"))
    for mission in c.get("SpaceFlightMission", _NONE):
        f.add("SFM", mission.text)
    p = _kids(pubmed_data)
    f.history(_first(p, "History"))
    pmc, mid = f.article_ids(_first(p, "ArticleIdList"))
    f.add("PMC", pmc)
    f.add("MID", mid)
    f.add("PST", _first_text(p, "PublicationStatus"))
    f.add("SO", _source_line(f.items))
    return f.items


def _first_path_text(parents: list[dict[object, str | None]], tag: str) -> str | None:
    """``findtext("Parent/tag")`` over the parents' :func:`_texts`."""
    for texts in parents:
        if tag in texts:
            return texts[tag] or ""
    return None


def _mesh_heading(heading: etree._Element) -> str:
    """A ``MeshHeading`` as its MH value, ``*Descriptor/Qualifier/*Qualifier``; '' without a
    descriptor."""
    descriptor: etree._Element | None = None
    qualifiers: list[str] = []
    for child in heading:
        if child.tag == "DescriptorName":
            if descriptor is None:
                descriptor = child
        elif child.tag == "QualifierName":
            star = "*" if child.get("MajorTopicYN") == "Y" else ""
            qualifiers.append(star + _text(child))
    if descriptor is None:
        return ""
    star = "*" if descriptor.get("MajorTopicYN") == "Y" else ""
    return "/".join([star + _text(descriptor), *qualifiers])


def book_fields(book: etree._Element) -> Fields:
    """The MEDLINE fields of a ``PubmedBookArticle`` (book or chapter), as PubMed prints them."""
    f = _Fields()
    b = _kids(book)
    d = _kids(_first(b, "BookDocument"))
    about = _kids(_first(d, "Book"))
    data = _first(b, "PubmedBookData")
    publisher = _first(about, "Publisher")
    f.add("PMID", _first_text(d, "PMID"))
    f.add("DRDT", _compact_date(_first(d, "DateRevised")))
    f.add("CTDT", _compact_date(_first(d, "ContributionDate")))
    if publisher is not None:
        f.add("PB", publisher.findtext("PublisherName"))
    f.add("DP", _pub_date(_first(about, "PubDate")))
    f.add("TI", _text(_first(d, "ArticleTitle")))
    f.add("BTI", _text(_first(about, "BookTitle")))
    f.add("CTI", _text(_first(about, "CollectionTitle")))
    f.add("VTI", _text(_first(about, "VolumeTitle")))
    f.add("EN", _first_text(about, "Edition"))
    f.locations(d)
    f.abstract(_first(d, "Abstract"))
    for editors in about.get("AuthorList", _NONE):
        if editors.get("Type") != "editors":
            continue
        for editor in editors.iterchildren("Author"):
            texts = _texts(editor)
            last, fore = _norm(texts.get("LastName")), _norm(texts.get("ForeName"))
            f.add("FED", f"{last}, {fore}" if fore else last)
            f.add("ED", " ".join(p for p in (last, _norm(texts.get("Initials"))) if p))
    for authors in d.get("AuthorList", _NONE):
        if authors.get("Type", "authors") == "authors":
            f.people(authors.iterchildren("Author"), "FAU", "AU", "AD")
    for language in d.get("Language", _NONE):
        f.add("LA", language.text)
    f.grants(d)
    for kind in d.get("PublicationType", _NONE):
        f.add("PT", kind.text)
    if publisher is not None:
        f.add("PL", publisher.findtext("PublisherLocation"))
    f.keywords(d)
    for isbn in about.get("Isbn", _NONE):
        f.add("ISBN", isbn.text)
    if data is not None:
        f.history(data.find("History"))
    f.article_ids(_first(d, "ArticleIdList"))
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
    """The element of a record's text. :raises RecordError: it is not well-formed XML."""
    try:
        return _parse_bytes(text.encode("utf-8", "surrogatepass"))
    except (etree.XMLSyntaxError, ValueError) as exc:
        found = _PMID_IN_TEXT.search(text)
        raise RecordError(
            f"not well-formed XML: {exc}", pmid=found.group(1) if found else None
        ) from None


def _parse_bytes(data: bytes) -> etree._Element:
    """The element of a record's bytes. A formula whose ``mml`` prefix is not declared in the
    record (but on the file's root element, or by NLM's DTD, which fixes it) is read with
    MathML's namespace, as the whole file would be.

    :raises etree.XMLSyntaxError: not well-formed XML, or not UTF-8.
    """
    try:
        return etree.fromstring(data, _xml_parser())
    except etree.XMLSyntaxError as exc:
        if not _UNDECLARED_MML.search(str(exc)):
            raise
        try:
            return etree.fromstring(_MML_SCOPE_START + data + _MML_SCOPE_END, _xml_parser())[0]
        except etree.XMLSyntaxError:
            raise exc from None


def _xml_parser() -> etree.XMLParser:
    # A parser per call: lxml parsers must not be shared between threads (threads pool).
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, remove_comments=True
    )


_UNDECLARED_MML = re.compile(r"\bNamespace prefix mml\b.* is not defined")
_MML_SCOPE_START = f'<mml-scope xmlns:mml="{MATHML_NAMESPACE}">'.encode()
_MML_SCOPE_END = b"</mml-scope>"


def xml_record_to_document(text: str) -> Document | Deletion:
    """Map one PubMed XML record onto the document model (or a deletion).

    :raises RecordError: the text is not well-formed XML, not a PubMed record, or not a valid
        document (no PMID, no title...); ``pmid`` is set when it could be read.
    """
    return _root_to_document(_parse(text))


def xml_record_span_to_document(data: bytes, start: int, end: int) -> Document | Deletion:
    """:func:`xml_record_to_document` for the record ``data[start:end]``, UTF-8 as a packed
    batch holds it (invalid bytes replaced).

    The compiled parser, when built (:mod:`worker.native`), maps the records the producer
    makes, without a Python object per element; it leaves every other record (a deletion,
    anything unusual or wrong) to this module, which parses the bytes as they are and
    decodes them (with replacement) only if that fails.
    """
    parser = compiled_parser()
    if parser is not None:
        body = parser.xml_body_json_at(data, start, end, _xml_tables())
        if body is not None:
            return document_from_json(body)
    raw = data[start:end]
    try:
        root = _parse_bytes(raw)
    except (etree.XMLSyntaxError, ValueError):
        root = _parse(raw.decode("utf-8", "replace"))
    return _root_to_document(root)


@cache
def _xml_tables() -> Any:
    """This module's tables for the compiled parser."""
    return native.xml_tables(
        MONTHS,
        MONTH_NAMES,
        COMMENT_TAGS,
        sorted(SKIPPED_REF_TYPES),
        list(STAMP_TAGS),
        PMID_VERSION_MAX,
    )


def _root_to_document(root: etree._Element) -> Document | Deletion:
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
