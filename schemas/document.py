"""The indexed document: the single source of truth for what goes into Elasticsearch.

Built by :func:`worker.documents.build_document` from MEDLINE fields (PubMed XML is first
rendered as the same fields, see :mod:`worker.pubmed_xml`). The index template
(:mod:`schemas.index_template`) maps every field declared here, and a test keeps the two in
step.

The indexed body is the model's JSON with nulls and empty lists/objects left out, so that
documents stay small: :meth:`Document.index_body`. Instances are frozen, because the body a
document was validated from is kept and returned as is.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Required

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, with_config
from typing_extensions import TypedDict

#: Longest PMID taken (PMIDs are 1 to 8 digits today; the margin is for the future).
PMID_MAX_DIGITS = 20
#: Where a document keeps the body it was validated from: an entry of its ``__dict__`` that
#: is not a field (pydantic ignores such entries in comparisons, as it does for cached
#: properties). Cheaper than a private attribute, which pydantic sets up on every instance.
_BODY_KEY = "_index_body"
#: Where a document validated from JSON keeps that JSON (see ``_BODY_KEY``).
_JSON_KEY = "_index_json"

#: How far apart two PMID versions' external versions start (see ``Document.revision_version``):
#: a revision date as YYYYMMDD is below it, so every revision of a later version of a citation
#: is above every revision of an earlier one.
PMID_VERSION_STEP = 10**8
#: Highest PMID version taken (the index maps it as a short; citations have a handful).
PMID_VERSION_MAX = 32767

#: The document's fields derived from ``mesh`` (see the document), for whoever handles them apart.
DERIVED_MESH_FIELDS = ("mesh_major_topics", "mesh_qualified_terms")

#: A string with at least one character that is not whitespace.
NonBlank = Annotated[str, StringConstraints(pattern=r"\S")]
#: A PubMed id: digits only.
Pmid = Annotated[str, StringConstraints(pattern=r"^[0-9]+$", max_length=PMID_MAX_DIGITS)]


# The parts of a document are TypedDicts: pydantic validates them as strictly as models (the
# document's validation reports ``mesh.3.descriptor``), and they stay plain JSON objects,
# which costs a fifth less to validate than model instances (25 parts a citation). Keys
# that are absent are simply not there: the indexed body holds no nulls.

#: The parts' config: a key a part does not declare is ignored, where the document refuses
#: one. Refusing makes pydantic read every key of every part, 14 % of a citation's
#: validation (24.4 against 20.9 µs a body). A part's keys come from this project's parsers,
#: never from the input (an unknown tag goes to ``extra``); a test holds every key the parsers
#: write to the model, and the index's strict mapping refuses any other.
PART_CONFIG = ConfigDict(extra="ignore")


@with_config(PART_CONFIG)
class Author(TypedDict, total=False):
    """An author (FAU/AU) or investigator (FIR/IR) with the lines that follow it."""

    full_name: Annotated[str, Field(description="FAU or FIR: 'Sorensen, Per Soelberg'.")]
    short_name: Annotated[str, Field(description="AU or IR: 'Sorensen PS'.")]
    affiliations: Annotated[list[str], Field(description="AD (or IRAD) lines.")]
    identifiers: Annotated[list[str], Field(description="AUID, e.g. 'ORCID: ...'.")]


@with_config(PART_CONFIG)
class MeshHeading(TypedDict, total=False):
    """An MH line: ``Descriptor/Qualifier/*Qualifier``.

    NLM puts the star on the descriptor, or on the qualifier that makes the heading a main
    topic of the article; ``major`` says either, and the other two say where.
    """

    descriptor: Required[NonBlank]
    qualifiers: list[str]
    major: Required[Annotated[bool, Field(description="The descriptor or a qualifier is starred.")]]
    descriptor_major: Annotated[
        bool, Field(description="The descriptor itself is starred; present only then.")
    ]
    major_qualifiers: Annotated[
        list[str], Field(description="The starred qualifiers, in order; present only if any.")
    ]


@with_config(PART_CONFIG)
class Substance(TypedDict, total=False):
    """An RN line (``0 (Immunoglobulin G)``) or an NM line (a substance name alone)."""

    registry_number: Annotated[str, Field(description="CAS/EC number; '0' when none.")]
    name: Required[str]


@with_config(PART_CONFIG)
class Grant(TypedDict, total=False):
    """A GR line: ``R01 NS12345/NS/NINDS NIH HHS/United States``, raw and split at '/'."""

    raw: Required[str]
    grant_id: str
    acronym: str
    agency: str
    country: str


@with_config(PART_CONFIG)
class TypedValue(TypedDict, total=False):
    """A value with its type: an ISSN with ``Print``, an article id with ``doi``."""

    value: Required[str]
    type: str


@with_config(PART_CONFIG)
class Journal(TypedDict, total=False):
    """Where the article appeared."""

    title: Annotated[str, Field(description="JT")]
    iso_abbrev: Annotated[str, Field(description="TA")]
    nlm_id: Annotated[str, Field(description="JID")]
    issns: Annotated[list[TypedValue], Field(description="IS with type")]
    volume: Annotated[str, Field(description="VI")]
    issue: Annotated[str, Field(description="IP")]
    pages: Annotated[str, Field(description="PG")]
    country: Annotated[str, Field(description="PL")]


@with_config(PART_CONFIG)
class PublicationDate(TypedDict, total=False):
    """DP: the raw string, and what can be derived from it."""

    raw: Required[str]
    year: int
    date: Annotated[dt.date, Field(description="First day the raw string can mean.")]


@with_config(PART_CONFIG)
class HistoryEvent(TypedDict, total=False):
    """A PHST line: a moment with its status (``received``, ``pubmed``, ``medline``, ...)."""

    status: str
    date: Required[dt.datetime]


class Document(BaseModel):
    """One citation, as indexed. JSON field names are the index's field names."""

    # An unknown key is a clear error: "is not a field of the document". No string cache:
    # pydantic's default hashes and looks up every short string it reads, and a citation's
    # strings are mostly unique; validation took 4-6 % longer with it (bench_parse.py, its
    # string-cache lines).
    model_config = ConfigDict(extra="forbid", frozen=True, cache_strings="none")

    pmid: Pmid = Field(description="PubMed id, digits only; the document id.")
    pmid_version: int | None = Field(
        None,
        ge=2,
        le=PMID_VERSION_MAX,
        description="PubMed's version of a versioned citation (PMID.version, PubMed XML's "
        "<PMID Version>); absent for version 1, which every other citation is.",
    )
    title: NonBlank | None = Field(
        None,
        description="TI; BTI for a book; TT for a citation with no English title; absent "
        "for a citation with no title at all, which PubMed has too (an erratum, say).",
    )
    abstract: str | None = Field(None, description="AB")
    other_abstracts: list[str] = Field(default_factory=list, description="OAB")
    transliterated_title: str | None = Field(None, description="TT")

    authors: list[Author] = Field(default_factory=list, description="FAU/AU with AD and AUID")
    corporate_authors: list[str] = Field(default_factory=list, description="CN")
    investigators: list[Author] = Field(default_factory=list, description="FIR/IR with IRAD")

    mesh: list[MeshHeading] = Field(default_factory=list, description="MH")
    # The two below are derived from ``mesh``, so that a plain keyword query answers PubMed's
    # [majr] and "term/subheading" searches in either mapping: under the flat one, ``mesh``'s
    # descriptors, qualifiers and major flags are each queried on their own.
    mesh_major_topics: list[str] = Field(
        default_factory=list,
        description="The descriptor of every MH heading that is a major topic (a star on it or "
        "on one of its qualifiers), in order.",
    )
    mesh_qualified_terms: list[str] = Field(
        default_factory=list,
        description="'Descriptor/Qualifier' for every qualifier of every MH heading, in order.",
    )
    keywords: list[str] = Field(default_factory=list, description="OT")
    substances: list[Substance] = Field(default_factory=list, description="RN and NM")
    publication_types: list[str] = Field(default_factory=list, description="PT")
    languages: list[str] = Field(default_factory=list, description="LA")
    grants: list[Grant] = Field(default_factory=list, description="GR")
    journal: Journal = Field(default_factory=dict)  # type: ignore[arg-type]

    pub_date: PublicationDate | None = Field(None, description="DP")
    electronic_pub_date: dt.date | None = Field(None, description="DEP")
    completed: dt.date | None = Field(None, description="DCOM")
    revised: dt.date | None = Field(None, description="LR")
    book_revised: dt.date | None = Field(None, description="DRDT: a book record's revision date.")
    entrez_date: dt.datetime | None = Field(None, description="EDAT")
    mesh_date: dt.datetime | None = Field(None, description="MHDA")
    created: dt.datetime | None = Field(None, description="CRDT")
    history: list[HistoryEvent] = Field(default_factory=list, description="PHST")

    doi: str | None = Field(None, description="The first AID (else LID) of type doi.")
    pii: str | None = Field(None, description="The first AID (else LID) of type pii.")
    pmc: str | None = Field(None, description="PMC")
    article_ids: list[TypedValue] = Field(default_factory=list, description="AID and LID")

    status: str | None = Field(None, description="STAT")
    owner: str | None = Field(None, description="OWN")
    publication_status: str | None = Field(None, description="PST")
    subsets: list[str] = Field(default_factory=list, description="SB")
    source: str | None = Field(None, description="SO")

    extra: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Every tag the model does not map, and every date that could not be "
        "read, by tag, values in order.",
    )

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Document:
        """Validate an index body into a document that keeps it, so that :meth:`index_body`
        costs nothing.

        :param body: JSON types only, nothing null or empty: exactly what is to be indexed.
        :raises pydantic.ValidationError: the body does not fit the model.
        """
        document = cls.model_validate(body)
        object.__setattr__(document, _BODY_KEY, body)
        return document

    @classmethod
    def from_json(cls, body_json: bytes) -> Document:
        """Validate an index body given as JSON into a document that keeps it, so that
        :meth:`index_json` costs nothing.

        :param body_json: exactly what is to be indexed (nothing null or empty).
        :raises pydantic.ValidationError: the body does not fit the model.
        """
        # The validator itself: model_validate_json's keyword handling costs a microsecond.
        document = cls.__pydantic_validator__.validate_json(body_json)
        document.__dict__[_JSON_KEY] = body_json
        return document

    def index_body(self) -> dict[str, Any]:
        """The JSON body that is indexed: the model in JSON form, without nulls and empty
        lists or objects. The dict is shared with the document: read it, don't change it."""
        body = self.__dict__.get(_BODY_KEY)
        if body is None:
            kept = self.__dict__.get(_JSON_KEY)
            body = orjson.loads(kept) if kept is not None else prune(self.model_dump(mode="json"))
            object.__setattr__(self, _BODY_KEY, body)
        return body

    def model_copy(self, *, update: Any = None, deep: bool = False) -> Document:
        """A copy, as pydantic makes it, that works its body out afresh (``update`` may have
        changed it)."""
        copied = super().model_copy(update=update, deep=deep)
        copied.__dict__.pop(_BODY_KEY, None)
        copied.__dict__.pop(_JSON_KEY, None)
        return copied

    def index_json(self) -> bytes:
        """:meth:`index_body` serialised (compact UTF-8 JSON)."""
        kept = self.__dict__.get(_JSON_KEY)
        return kept if kept is not None else orjson.dumps(self.index_body())

    def revision_version(self) -> int:
        """The citation's revision as an external version number, so that a redelivered or
        older revision never overwrites a newer one: ``(pmid_version - 1) * 10**8`` plus LR
        (else DCOM, else a book's DRDT) as YYYYMMDD, or plus 0 without them.

        A later PMID version wins whatever its dates, as in PubMed, which indexes only a
        citation's latest version; a version-1 citation's number is its date alone.
        """
        moment = self.revised or self.completed or self.book_revised
        day = moment.year * 10000 + moment.month * 100 + moment.day if moment else 0
        return ((self.pmid_version or 1) - 1) * PMID_VERSION_STEP + day


def prune(value: Any) -> Any:
    """``value`` without None, empty lists and empty dicts, at every depth."""
    if isinstance(value, dict):
        pruned = {}
        for key, item in value.items():
            item = prune(item)
            if item is not None and item != [] and item != {} and item != ():
                pruned[key] = item
        return pruned
    if isinstance(value, list | tuple):
        return [prune(item) for item in value]
    return value
