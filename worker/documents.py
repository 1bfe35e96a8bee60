"""MEDLINE fields → :class:`~schemas.document.Document`, validated.

The mapping keeps order where order carries meaning: AD and AUID lines belong to the author
(FAU/AU) before them, IRAD to the investigator before it. Every tag the model does not map
goes to ``extra`` with its values in order, so nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from schemas.document import Document
from worker.dates import parse_compact_date, parse_publication_date, parse_stamp, split_history
from worker.errors import MedlineParseError, RecordError
from worker.medline_text import parse_fields

#: Characters of an offending value quoted in a field error.
VALUE_LIMIT = 120
#: Plain-word messages for pydantic's error types.
_PLAIN = {
    "missing": "is required but the record has none",
    "string_too_short": "is empty",
    "string_pattern_mismatch": "must be digits only",
    "string_too_long": "is too long",
}
#: MEDLINE tag of each document field, to name both in errors.
_FIELD_TAGS = {"pmid": "PMID", "title": "TI", "mesh": "MH", "pub_date": "DP"}


def _typed(value: str, open_: str, close: str) -> tuple[str, str | None]:
    """``10.1/x [doi]`` → (``10.1/x``, ``doi``); ``0022-510X (Print)`` → (..., ``Print``)."""
    text = value.strip()
    if text.endswith(close) and open_ in text:
        head, _, kind = text[: -len(close)].rpartition(open_)
        return head.strip(), kind.strip() or None
    return text, None


def _mesh(value: str) -> dict[str, Any]:
    parts = value.split("/")
    major = False
    names = []
    for part in parts:
        if part.startswith("*"):
            major = True
            part = part[1:]
        names.append(part.strip())
    return {"descriptor": names[0], "qualifiers": names[1:], "major": major}


def _grant(value: str) -> dict[str, Any]:
    parts = [p.strip() or None for p in value.split("/")]
    parts += [None] * (4 - len(parts))
    return {
        "raw": value,
        "grant_id": parts[0],
        "acronym": parts[1],
        "agency": parts[2],
        "country": parts[3],
    }


def _substance(value: str) -> dict[str, Any]:
    number, name = _typed(value, "(", ")")
    if name is None:
        return {"registry_number": None, "name": number}
    return {"registry_number": number, "name": name}


class _Builder:
    """Accumulates one record's fields into the document's dict shape."""

    def __init__(self) -> None:
        self.doc: dict[str, Any] = {
            "authors": [],
            "investigators": [],
            "journal": {},
            "extra": {},
        }
        self.person: dict[str, Any] | None = None  # last author or investigator
        self.person_tag: str | None = None

    def add(self, tag: str, value: str) -> None:
        handler = _HANDLERS.get(tag)
        if handler is None:
            self.doc["extra"].setdefault(tag, []).append(value)
        else:
            handler(self, value)

    # --- people: order matters ---
    def _new_person(self, kind: str, full: str | None, short: str | None) -> None:
        person = {"full_name": full, "short_name": short, "affiliations": [], "identifiers": []}
        self.doc[kind].append(person)
        self.person = person
        self.person_tag = kind

    def full_author(self, value: str) -> None:
        self._new_person("authors", value, None)

    def short_author(self, value: str) -> None:
        if self.person_tag == "authors" and self.person and self.person["short_name"] is None:
            self.person["short_name"] = value
        else:
            self._new_person("authors", None, value)

    def full_investigator(self, value: str) -> None:
        self._new_person("investigators", value, None)

    def short_investigator(self, value: str) -> None:
        if self.person_tag == "investigators" and self.person and not self.person["short_name"]:
            self.person["short_name"] = value
        else:
            self._new_person("investigators", None, value)

    def affiliation(self, value: str) -> None:
        if self.person is None:
            self.doc["extra"].setdefault("AD", []).append(value)
        else:
            self.person["affiliations"].append(value)

    def investigator_affiliation(self, value: str) -> None:
        if self.person is None or self.person_tag != "investigators":
            self.doc["extra"].setdefault("IRAD", []).append(value)
        else:
            self.person["affiliations"].append(value)

    def author_identifier(self, value: str) -> None:
        if self.person is None:
            self.doc["extra"].setdefault("AUID", []).append(value)
        else:
            self.person["identifiers"].append(value)

    # --- the rest ---
    def first(self, key: str, value: str) -> None:
        """A single-valued field; a repeat goes to extra rather than being lost."""
        if key in self.doc:
            self.doc["extra"].setdefault(key, []).append(value)
        else:
            self.doc[key] = value

    def journal(self, key: str, value: str) -> None:
        self.doc["journal"].setdefault(key, value)

    def append(self, key: str, value: Any) -> None:
        self.doc.setdefault(key, []).append(value)

    def article_id(self, tag: str, value: str) -> None:
        ident, kind = _typed(value, "[", "]")
        self.append("article_ids", {"value": ident, "type": kind})
        # AID lines are the article's ids; an LID id fills in only when no AID has it.
        if kind in ("doi", "pii") and (tag == "AID" or kind not in self.doc):
            self.doc[kind] = ident

    def pub_date(self, value: str) -> None:
        year, day = parse_publication_date(value)
        self.doc.setdefault("pub_date", {"raw": value, "year": year, "date": day})

    def compact_date(self, key: str, value: str) -> None:
        parsed = parse_compact_date(value)
        if parsed is None:
            self.doc["extra"].setdefault(key, []).append(value)
        else:
            self.doc.setdefault(key, parsed)

    def stamp(self, key: str, value: str) -> None:
        parsed = parse_stamp(value)
        if parsed is None:
            self.doc["extra"].setdefault(key, []).append(value)
        else:
            self.doc.setdefault(key, parsed)

    def history(self, value: str) -> None:
        stamp, status = split_history(value)
        self.append("history", {"status": status, "date": parse_stamp(stamp), "raw": value})


def _on(method: Callable[..., None], *args: str) -> Callable[[_Builder, str], None]:
    return lambda builder, value: method(builder, *args, value)


_HANDLERS: dict[str, Callable[[_Builder, str], None]] = {
    "PMID": _on(_Builder.first, "pmid"),
    "TI": _on(_Builder.first, "title"),
    "AB": _on(_Builder.first, "abstract"),
    "OAB": _on(_Builder.append, "other_abstracts"),
    "TT": _on(_Builder.first, "transliterated_title"),
    "FAU": _Builder.full_author,
    "AU": _Builder.short_author,
    "AD": _Builder.affiliation,
    "AUID": _Builder.author_identifier,
    "CN": _on(_Builder.append, "corporate_authors"),
    "FIR": _Builder.full_investigator,
    "IR": _Builder.short_investigator,
    "IRAD": _Builder.investigator_affiliation,
    "MH": lambda b, v: b.append("mesh", _mesh(v)),
    "OT": _on(_Builder.append, "keywords"),
    "RN": lambda b, v: b.append("substances", _substance(v)),
    "NM": lambda b, v: b.append("substances", {"registry_number": None, "name": v}),
    "PT": _on(_Builder.append, "publication_types"),
    "LA": _on(_Builder.append, "languages"),
    "GR": lambda b, v: b.append("grants", _grant(v)),
    "JT": _on(_Builder.journal, "title"),
    "TA": _on(_Builder.journal, "iso_abbrev"),
    "JID": _on(_Builder.journal, "nlm_id"),
    "IS": lambda b, v: (
        b.doc["journal"]
        .setdefault("issns", [])
        .append(dict(zip(("value", "type"), _typed(v, "(", ")"), strict=True)))
    ),
    "VI": _on(_Builder.journal, "volume"),
    "IP": _on(_Builder.journal, "issue"),
    "PG": _on(_Builder.journal, "pages"),
    "PL": _on(_Builder.journal, "country"),
    "DP": _Builder.pub_date,
    "DEP": _on(_Builder.compact_date, "electronic_pub_date"),
    "DCOM": _on(_Builder.compact_date, "completed"),
    "LR": _on(_Builder.compact_date, "revised"),
    "EDAT": _on(_Builder.stamp, "entrez_date"),
    "MHDA": _on(_Builder.stamp, "mesh_date"),
    "CRDT": _on(_Builder.stamp, "created"),
    "PHST": _Builder.history,
    "AID": _on(_Builder.article_id, "AID"),
    "LID": _on(_Builder.article_id, "LID"),
    "PMC": _on(_Builder.first, "pmc"),
    "STAT": _on(_Builder.first, "status"),
    "OWN": _on(_Builder.first, "owner"),
    "PST": _on(_Builder.first, "publication_status"),
    "SB": _on(_Builder.append, "subsets"),
    "SO": _on(_Builder.first, "source"),
}


def _field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    errors = []
    for error in exc.errors():
        path = ".".join(str(p) for p in error["loc"])
        message = _PLAIN.get(error["type"], error["msg"].lower())
        value = error.get("input")
        if isinstance(value, str) and len(value) > VALUE_LIMIT:
            value = value[:VALUE_LIMIT] + "..."
        elif not isinstance(value, str | int | float | bool | type(None)):
            value = None
        errors.append({"field": path, "message": message, "value": value})
    return errors


def _reason(errors: list[dict[str, Any]]) -> str:
    first = errors[0]
    head = first["field"].split(".")[0]
    tag = _FIELD_TAGS.get(head)
    named = f"field '{first['field']}'" + (f" ({tag})" if tag else "")
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return f"{named} {first['message']}{more}"


def build_document(fields: list[tuple[str, str]]) -> Document:
    """Map a record's fields onto a validated :class:`Document`.

    :raises RecordError: the fields do not make a valid document; ``reason`` names the field
        and what was wrong, ``errors`` lists every problem, ``pmid`` is set when known.
    """
    builder = _Builder()
    for tag, value in fields:
        builder.add(tag, value)
    doc = builder.doc
    if "title" not in doc and "BTI" in doc["extra"]:
        doc["title"] = doc["extra"]["BTI"][0]  # a book's title
    try:
        return Document.model_validate(doc)
    except ValidationError as exc:
        errors = _field_errors(exc)
        pmid = doc.get("pmid") if isinstance(doc.get("pmid"), str) else None
        raise RecordError(_reason(errors), errors, pmid=pmid) from None


def record_to_document(text: str) -> Document:
    """Parse one raw MEDLINE record into a validated document.

    :raises MedlineParseError: the text is not a MEDLINE record.
    :raises RecordError: it is one, but not a valid document.
    """
    try:
        fields = parse_fields(text)
    except MedlineParseError:
        raise
    except Exception as exc:  # a parser bug must surface as a bad record, not a crash
        raise MedlineParseError(f"unreadable record: {exc!r}") from exc
    return build_document(fields)
