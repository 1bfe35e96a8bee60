"""MEDLINE fields → :class:`~schemas.document.Document`, validated.

The mapping keeps order where order carries meaning: AD and AUID lines belong to the author
(FAU/AU) before them, IRAD (and AD, AUID) to the investigator (FIR/IR) before it; after a CN
line they belong to the group, which the model keeps as a name only, so they go to ``extra``.
A single-valued field given twice keeps the first value and puts the others in ``extra``; a
date that cannot be read goes to ``extra`` under its tag; every tag the model does not map
goes to ``extra`` with its values in order. Nothing is dropped silently.

The builder writes the index body directly (JSON types, nothing null or empty), and the
model validates that body; :meth:`Document.index_body` then returns it without another pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.document import Document
from worker import native
from worker.dates import compact_date_iso, history_iso, publication_date_iso, stamp_iso
from worker.errors import MedlineParseError, RecordError
from worker.medline_tags import KNOWN_TAGS
from worker.medline_text import QUOTE_LIMIT, parse_error, parse_fields

log = logging.getLogger(__name__)

#: Characters of an offending value quoted in a field error.
VALUE_LIMIT = 120

# How each simply mapped tag becomes a field: a single value (a repeat goes to ``extra``), a
# list of strings, a journal field, a date written 20030402, or one written 2003/02/01 04:00.
_SINGLE, _LIST, _JOURNAL, _COMPACT_DATE, _STAMP = range(5)
#: Tag → (kind, document field) for the tags that map without a helper.
SIMPLE_TAGS: dict[str, tuple[int, str]] = {
    "PMID": (_SINGLE, "pmid"),
    "TI": (_SINGLE, "title"),
    "AB": (_SINGLE, "abstract"),
    "TT": (_SINGLE, "transliterated_title"),
    "PMC": (_SINGLE, "pmc"),
    "STAT": (_SINGLE, "status"),
    "OWN": (_SINGLE, "owner"),
    "PST": (_SINGLE, "publication_status"),
    "SO": (_SINGLE, "source"),
    "OAB": (_LIST, "other_abstracts"),
    "OT": (_LIST, "keywords"),
    "PT": (_LIST, "publication_types"),
    "LA": (_LIST, "languages"),
    "SB": (_LIST, "subsets"),
    "JT": (_JOURNAL, "title"),
    "TA": (_JOURNAL, "iso_abbrev"),
    "JID": (_JOURNAL, "nlm_id"),
    "VI": (_JOURNAL, "volume"),
    "IP": (_JOURNAL, "issue"),
    "PG": (_JOURNAL, "pages"),
    "PL": (_JOURNAL, "country"),
    "DEP": (_COMPACT_DATE, "electronic_pub_date"),
    "DCOM": (_COMPACT_DATE, "completed"),
    "LR": (_COMPACT_DATE, "revised"),
    "DRDT": (_COMPACT_DATE, "book_revised"),
    "EDAT": (_STAMP, "entrez_date"),
    "MHDA": (_STAMP, "mesh_date"),
    "CRDT": (_STAMP, "created"),
}
#: Tags whose meaning depends on the person line before them; read in record order.
PEOPLE_TAGS = frozenset({"FAU", "AU", "AD", "AUID", "FIR", "IR", "IRAD", "CN"})
#: Entries each table of remembered conversions (MeSH heading, substance, ...) keeps before
#: it starts afresh. The same few thousand values make up most of any file.
MEMO_SIZE = 50_000

#: MEDLINE tag(s) of each document field, to name both in an error.
FIELD_TAGS = {
    "pmid": "PMID",
    "title": "TI",
    "abstract": "AB",
    "other_abstracts": "OAB",
    "transliterated_title": "TT",
    "authors": "FAU/AU",
    "corporate_authors": "CN",
    "investigators": "FIR/IR",
    "mesh": "MH",
    "mesh_major_topics": "MH",
    "mesh_qualified_terms": "MH",
    "keywords": "OT",
    "substances": "RN/NM",
    "publication_types": "PT",
    "languages": "LA",
    "grants": "GR",
    "journal": "JT/TA/JID/IS/VI/IP/PG/PL",
    "pub_date": "DP",
    "electronic_pub_date": "DEP",
    "completed": "DCOM",
    "revised": "LR",
    "book_revised": "DRDT",
    "entrez_date": "EDAT",
    "mesh_date": "MHDA",
    "created": "CRDT",
    "history": "PHST",
    "doi": "AID",
    "pii": "AID",
    "pmc": "PMC",
    "article_ids": "AID/LID",
    "status": "STAT",
    "owner": "OWN",
    "publication_status": "PST",
    "subsets": "SB",
    "source": "SO",
}
#: Plain words for pydantic's error types; ``{...}`` takes values from the error's context.
PLAIN_MESSAGES = {
    "missing": "is required but the record has none",
    "string_too_long": "is too long (at most {max_length} characters)",
    "string_type": "must be text",
    "list_type": "must be a list of values",
    "dict_type": "must be a group of fields",
    "model_type": "must be a group of fields",
    "bool_type": "must be true or false",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "extra_forbidden": "is not a field of the document",
    "date_type": "is not a date",
    "date_parsing": "is not a date",
    "date_from_datetime_parsing": "is not a date",
    "datetime_type": "is not a date and time",
    "datetime_parsing": "is not a date and time",
    "datetime_from_date_parsing": "is not a date and time",
}
#: What a pattern mismatch means, by the field's last name.
PATTERN_MESSAGES = {"pmid": "must be digits only", "title": "is empty", "descriptor": "is empty"}


def _split_typed(value: str, opener: str) -> tuple[str, str | None]:
    """``10.1/x [doi]`` → (``10.1/x``, ``doi``); ``0022-510X (Print)`` → (..., ``Print``)."""
    closer = "]" if opener == " [" else ")"
    if value.endswith(closer):
        # Identifiers may hold brackets ("10.1002/(SICI)..."): the type is the last group.
        at = value.rfind(opener) if opener == " [" else value.find(opener)
        if at > 0:
            return value[:at], value[at + 2 : -1].strip() or None
    return value, None


def _typed_value(value: str, opener: str) -> dict[str, str]:
    ident, kind = _split_typed(value, opener)
    return {"value": ident, "type": kind} if kind else {"value": ident}


def _issn(value: str) -> dict[str, str]:
    return _typed_value(value, " (")


def _mesh(value: str) -> dict[str, Any]:
    if "*" not in value:
        if "/" not in value:
            return {"descriptor": value, "major": False}
        descriptor, *qualifiers = value.split("/")
        return {"descriptor": descriptor, "qualifiers": qualifiers, "major": False}
    # NLM stars the descriptor, or the qualifier that makes the heading a main topic.
    descriptor, *qualifiers = value.split("/")
    heading: dict[str, Any] = {"descriptor": descriptor.replace("*", "")}
    if qualifiers:
        heading["qualifiers"] = [qualifier.replace("*", "") for qualifier in qualifiers]
    heading["major"] = True
    if "*" in descriptor:
        heading["descriptor_major"] = True
    starred = [qualifier.replace("*", "") for qualifier in qualifiers if "*" in qualifier]
    if starred:
        heading["major_qualifiers"] = starred
    return heading


def _mesh_terms(mesh: list[dict[str, Any]], body: dict[str, Any]) -> None:
    """The headings' major topics and descriptor/qualifier pairs, as terms of their own."""
    majors = [heading["descriptor"] for heading in mesh if heading["major"]]
    if majors:
        body["mesh_major_topics"] = majors
    pairs = [
        f"{heading['descriptor']}/{qualifier}"
        for heading in mesh
        for qualifier in heading.get("qualifiers", ())
    ]
    if pairs:
        body["mesh_qualified_terms"] = pairs


def _substance(value: str) -> dict[str, str]:
    number, name = _split_typed(value, " (")
    if name is None:
        return {"name": number}
    return {"registry_number": number, "name": name}


def _substance_name(value: str) -> dict[str, str]:
    return {"name": value}


def _history(value: str) -> dict[str, str] | None:
    event = history_iso(value)
    if event is None:
        return None
    status, moment = event
    return {"date": moment} if status is None else {"status": status, "date": moment}


def _pub_date(value: str) -> dict[str, Any]:
    year, day = publication_date_iso(value)
    if year is None:
        return {"raw": value}
    if day is None:
        return {"raw": value, "year": year}
    return {"raw": value, "year": year, "date": day}


_GRANT_PARTS = ("grant_id", "acronym", "agency", "country")


def _grant(value: str) -> dict[str, str]:
    parts = value.split("/")
    if len(parts) > len(_GRANT_PARTS):
        parts = value.rsplit("/", len(_GRANT_PARTS) - 1)  # a grant id holding '/'
    grant = {"raw": value}
    for name, part in zip(_GRANT_PARTS, parts, strict=False):
        part = part.strip()
        if part:
            grant[name] = part
    return grant


class _Memo:
    """A field value's part of the body, remembered (bounded): the same few thousand MeSH
    headings, substances, history events, ... make up most of any file.

    ``memo.get(value) or memo.miss(value)`` gives the part, or None when the value cannot be
    read (a date of no known shape). Parts are shared by every body with that value: bodies
    are read-only.
    """

    def __init__(self, convert: Callable[[str], Any]) -> None:
        self.convert = convert
        self.table: dict[str, Any] = {}
        self.get = self.table.get  # the table is cleared, never replaced: get stays bound

    def miss(self, value: str) -> Any:
        part = self.convert(value)
        if part is not None:
            if len(self.table) >= MEMO_SIZE:
                self.table.clear()
            self.table[value] = part
        return part


def forget_remembered() -> None:
    """Empty the tables of remembered parts (for benchmarks that must start cold)."""
    for memo in _MEMOS:
        memo.table.clear()


_mesh_of = _Memo(_mesh)
_substance_of = _Memo(_substance)
_substance_name_of = _Memo(_substance_name)
_history_of = _Memo(_history)
_issn_of = _Memo(_issn)
_pub_date_of = _Memo(_pub_date)
_grant_of = _Memo(_grant)
_MEMOS = (
    _mesh_of,
    _substance_of,
    _substance_name_of,
    _history_of,
    _issn_of,
    _pub_date_of,
    _grant_of,
)


def _add_extra(extra: dict[str, list[str]], tag: str, values: list[str]) -> None:
    found = extra.get(tag)
    if found is None:
        extra[tag] = values
    else:
        found.extend(values)


def _people(
    fields: list[tuple[str, str]], body: dict[str, Any], extra: dict[str, list[str]]
) -> None:
    """Authors, investigators and groups, with the lines that belong to each."""
    authors: list[dict[str, Any]] = []
    investigators: list[dict[str, Any]] = []
    groups: list[str] = []
    person: dict[str, Any] | None = None
    kind: list[dict[str, Any]] | None = None  # the list ``person`` is in
    for tag, value in fields:
        if tag == "FAU" or tag == "FIR":
            kind = authors if tag == "FAU" else investigators
            person = {"full_name": value}
            kind.append(person)
        elif tag == "AU" or tag == "IR":
            wanted = authors if tag == "AU" else investigators
            # The short name of the full name just read, or a person of its own.
            if kind is wanted and person is not None and "short_name" not in person:
                person["short_name"] = value
            else:
                kind = wanted
                person = {"short_name": value}
                kind.append(person)
        elif tag == "AD" or (tag == "IRAD" and kind is investigators):
            if person is None:
                _add_extra(extra, tag, [value])
            elif "affiliations" in person:
                person["affiliations"].append(value)
            else:
                person["affiliations"] = [value]
        elif tag == "AUID":
            if person is None:
                _add_extra(extra, tag, [value])
            elif "identifiers" in person:
                person["identifiers"].append(value)
            else:
                person["identifiers"] = [value]
        elif tag == "CN":
            groups.append(value)
            person = kind = None  # what follows a group belongs to the group
        else:  # IRAD after an author or nobody
            _add_extra(extra, tag, [value])
    if authors:
        body["authors"] = authors
    if investigators:
        body["investigators"] = investigators
    if groups:
        body["corporate_authors"] = groups


def _fields_to_body(fields: list[tuple[str, str]]) -> dict[str, Any]:
    """The index body of a record's fields."""
    grouped: dict[str, list[str]] = {}
    people: list[tuple[str, str]] = []
    get = grouped.get
    for field in fields:
        tag = field[0]
        if tag in PEOPLE_TAGS:
            people.append(field)
            continue
        values = get(tag)
        if values is None:
            grouped[tag] = [field[1]]
        else:
            values.append(field[1])

    body: dict[str, Any] = {}
    journal: dict[str, Any] = {}
    extra: dict[str, list[str]] = {}
    simple = SIMPLE_TAGS.get
    for tag, values in grouped.items():
        action = simple(tag)
        if action is not None:
            kind, key = action
            if kind == _LIST:
                body[key] = values
                continue
            if kind == _SINGLE:
                body[key] = values[0]
            elif kind == _JOURNAL:
                journal[key] = values[0]
            else:
                moment = (compact_date_iso if kind == _COMPACT_DATE else stamp_iso)(values[0])
                if moment is None:
                    _add_extra(extra, tag, values)  # kept as written, under its tag
                    continue
                body[key] = moment
            if len(values) > 1:
                _add_extra(extra, tag, values[1:])
            continue
        if tag == "MH":
            mesh = [_mesh_of.get(value) or _mesh_of.miss(value) for value in values]
            body["mesh"] = mesh
            _mesh_terms(mesh, body)
        elif tag == "RN" or tag == "NM":
            memo = _substance_of if tag == "RN" else _substance_name_of
            # RN and NM both: one list, in the order the tags came.
            body.setdefault("substances", []).extend(
                memo.get(value) or memo.miss(value) for value in values
            )
        elif tag == "PHST":
            events = [_history_of.get(value) or _history_of.miss(value) for value in values]
            if None in events:  # a date that cannot be read: kept as written
                _add_extra(extra, tag, [v for v, e in zip(values, events, strict=True) if not e])
                events = [event for event in events if event is not None]
            if events:
                body["history"] = events
        elif tag == "IS":
            journal["issns"] = [_issn_of.get(value) or _issn_of.miss(value) for value in values]
        elif tag == "DP":
            raw = values[0]
            body["pub_date"] = _pub_date_of.get(raw) or _pub_date_of.miss(raw)
            if len(values) > 1:
                _add_extra(extra, tag, values[1:])
        elif tag == "GR":
            body["grants"] = [_grant_of.get(value) or _grant_of.miss(value) for value in values]
        elif tag != "AID" and tag != "LID":
            _add_extra(extra, tag, values)  # not in the model: kept as it is
    if people:
        _people(people, body, extra)
    if journal:
        body["journal"] = journal
    if "AID" in grouped or "LID" in grouped:
        _article_ids(grouped.get("LID", ()), grouped.get("AID", ()), body)
    if "title" not in body:
        # A book's title is BTI. A citation with no English title (PubMed XML's empty
        # <ArticleTitle/>, some hundredths of a daily update) is shown by PubMed under its
        # vernacular one: without it, a valid citation would be dead-lettered for ever.
        fallback = grouped.get("BTI") or grouped.get("TT")
        if fallback:
            body["title"] = fallback[0]
    if extra:
        body["extra"] = extra
    return body


def _article_ids(lids: Iterable[str], aids: Iterable[str], body: dict[str, Any]) -> None:
    """Every LID and AID with its type, in record order (LID lines come before AID lines).
    The doi and pii are the first AID of that type, else the first LID of that type."""
    article_ids = []
    chosen: dict[tuple[str, str], str] = {}
    for tag, values in (("LID", lids), ("AID", aids)):
        for value in values:
            ident, kind = _split_typed(value, " [")
            if kind is None:
                article_ids.append({"value": ident})
            else:
                article_ids.append({"value": ident, "type": kind})
                chosen.setdefault((tag, kind), ident)
    body["article_ids"] = article_ids
    for kind in ("doi", "pii"):
        ident = chosen.get(("AID", kind)) or chosen.get(("LID", kind))
        if ident:
            body[kind] = ident


def _quote(value: Any) -> Any:
    if isinstance(value, str) and len(value) > VALUE_LIMIT:
        return value[:VALUE_LIMIT] + "..."
    if isinstance(value, str | int | float | bool | type(None)):
        return value
    return None  # a list or an object: the field name says enough


def _field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    errors = []
    for error in exc.errors(include_url=False):
        path = ".".join(str(part) for part in error["loc"])
        kind = error["type"]
        if kind == "string_pattern_mismatch":
            last = next((p for p in reversed(error["loc"]) if isinstance(p, str)), "")
            message = PATTERN_MESSAGES.get(str(last), "has the wrong form")
        elif kind in PLAIN_MESSAGES:
            message = PLAIN_MESSAGES[kind].format(**error.get("ctx", {}))
        else:
            message = error["msg"][:1].lower() + error["msg"][1:]
        errors.append({"field": path, "message": message, "value": _quote(error.get("input"))})
    return errors


def _reason(errors: list[dict[str, Any]]) -> str:
    first = errors[0]
    tag = FIELD_TAGS.get(first["field"].split(".")[0])
    sentence = f"field '{first['field']}'" + (f" ({tag})" if tag else "") + f" {first['message']}"
    if isinstance(first["value"], str) and first["message"] != PLAIN_MESSAGES["missing"]:
        sentence += f", got {first['value']!r}"
    if len(errors) > 1:
        sentence += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return sentence


@cache
def compiled_parser() -> Any | None:
    """The compiled parser (:mod:`worker.native`) as ``MEDLINE_PARSER`` asks, or None for
    the Python one. Worked out once; ``compiled_parser.cache_clear()`` makes it look again.

    :raises ConfigurationError: ``MEDLINE_PARSER=native`` and the extension is not built.
    """
    if not native.enabled():
        return None
    return native.parser(sorted(KNOWN_TAGS), SIMPLE_TAGS, QUOTE_LIMIT)


def _invalid(exc: ValidationError, pmid: Any) -> RecordError:
    errors = _field_errors(exc)
    return RecordError(_reason(errors), errors, pmid=_quote(pmid) or None)


def document_from_json(body_json: bytes) -> Document:
    """The document an index body made by the compiled parser validates into.

    :raises RecordError: the body is not a valid document, as :func:`build_document` says.
    """
    try:
        return Document.from_json(body_json)
    except ValidationError as exc:
        raise _invalid(exc, orjson.loads(body_json).get("pmid")) from None


def build_document(fields: list[tuple[str, str]]) -> Document:
    """Map a record's fields onto a validated :class:`Document`.

    :param fields: ``(tag, value)`` pairs in record order, as :func:`parse_fields` gives them;
        values already trimmed.
    :raises RecordError: the fields do not make a valid document; ``reason`` is one sentence
        naming the field (and its tag) and what was wrong, ``errors`` lists every problem as
        ``{field, message, value}``, ``pmid`` is the PMID when there is one.
    """
    parser = compiled_parser()
    if parser is not None:
        return document_from_json(parser.fields_body_json(fields))
    body = _fields_to_body(fields)
    try:
        return Document.from_body(body)
    except ValidationError as exc:
        raise _invalid(exc, body.get("pmid")) from None


def record_to_document(text: str) -> Document:
    """Parse one raw MEDLINE record into a validated document.

    :param text: the record's text, as :func:`worker.medline_text.iter_raw_records` gives it.
    :raises MedlineParseError: the text is not a MEDLINE record.
    :raises RecordError: it is one, but not a valid document. Nothing else: a failure of the
        parser itself is logged and reported as a RecordError too, so that one odd record
        is dead-lettered instead of failing its batch.
    """
    try:
        parser = compiled_parser()
        if parser is None:
            return build_document(parse_fields(text))
        return _compiled_document(parser.body_json, text)
    except RecordError:
        raise
    except Exception as exc:
        raise _parser_failure(exc) from exc


def record_span_to_document(data: bytes, start: int, end: int) -> Document:
    """:func:`record_to_document` for the record ``data[start:end]``, UTF-8 as a packed batch
    holds it (:class:`~schemas.messages.PackedBatch`): the compiled parser reads it in place,
    the Python one decodes it first (invalid bytes replaced).

    :raises MedlineParseError, RecordError: as :func:`record_to_document`.
    """
    parser = compiled_parser()
    if parser is None:
        return record_to_document(data[start:end].decode("utf-8", "replace"))
    try:
        return _compiled_document(parser.body_json_at, data, start, end)
    except RecordError:
        raise
    except Exception as exc:
        raise _parser_failure(exc) from exc


def _compiled_document(body_json: Callable[..., bytes], *args: object) -> Document:
    """The document whose index body the compiled parser's ``body_json(*args)`` makes.

    :raises MedlineParseError: the compiled parser found no MEDLINE record.
    :raises RecordError: the body is not a valid document.
    """
    try:
        body = body_json(*args)
    except native.ParseError as exc:
        raise parse_error(*exc.args) from None
    return document_from_json(body)


def _parser_failure(exc: Exception) -> MedlineParseError:
    """The dead letter's reason for a failure of the parser itself, logged with its trace."""
    log.exception("the parser failed on a record; it is dead-lettered")
    return MedlineParseError(f"the parser failed on this record: {exc!r}")
