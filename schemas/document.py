"""The indexed document: the single source of truth for what goes into Elasticsearch.

Built by :mod:`worker.documents` from MEDLINE text (and by :mod:`worker.pubmed_xml` from
PubMed XML); serialised with :meth:`Document.index_json`, exactly the body that is indexed and
that ``medline-ingest parse`` prints. The index template (``schemas/index_template.py``) maps
every field declared here, and a test keeps the two in step.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

#: A string that must hold something once stripped.
NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class Author(_Model):
    """An author (FAU/AU) or investigator (FIR/IR) with what follows it."""

    full_name: str | None = Field(None, description="FAU or FIR: 'Sorensen, Per Soelberg'.")
    short_name: str | None = Field(None, description="AU or IR: 'Sorensen PS'.")
    affiliations: list[str] = Field(default_factory=list, description="AD (or IRAD) lines.")
    identifiers: list[str] = Field(default_factory=list, description="AUID, e.g. 'ORCID: ...'.")


class MeshHeading(_Model):
    """An MH line: ``Descriptor/Qualifier/*Qualifier``."""

    descriptor: NonEmpty
    qualifiers: list[str] = Field(default_factory=list)
    major: bool = Field(False, description="The descriptor or any qualifier is starred.")


class Substance(_Model):
    """An RN line (``0 (Immunoglobulin G)``) or an NM line (a substance name)."""

    registry_number: str | None = None
    name: str


class Grant(_Model):
    """A GR line: ``R01 NS12345/NS/NINDS NIH HHS/United States``."""

    raw: str
    grant_id: str | None = None
    acronym: str | None = None
    agency: str | None = None
    country: str | None = None


class TypedValue(_Model):
    """A value with its type: ISSN ``(Print)``, article id ``[doi]``."""

    value: str
    type: str | None = None


class Journal(_Model):
    title: str | None = Field(None, description="JT")
    iso_abbrev: str | None = Field(None, description="TA")
    nlm_id: str | None = Field(None, description="JID")
    issns: list[TypedValue] = Field(default_factory=list, description="IS with type")
    volume: str | None = Field(None, description="VI")
    issue: str | None = Field(None, description="IP")
    pages: str | None = Field(None, description="PG")
    country: str | None = Field(None, description="PL")


class PublicationDate(_Model):
    """DP: the raw string, and what can be derived from it."""

    raw: str
    year: int | None = None
    date: dt.date | None = Field(None, description="First day the raw string can mean.")


class HistoryEvent(_Model):
    """A PHST line: a date with its status (``pubmed``, ``medline``, ``received``, ...)."""

    status: str | None = None
    date: dt.datetime | None = None
    raw: str


class Document(_Model):
    """One citation, as indexed. JSON field names are the index's field names."""

    pmid: Annotated[str, StringConstraints(pattern=r"^[0-9]+$", max_length=20)] = Field(
        description="PubMed id, digits only; the document id."
    )
    title: NonEmpty = Field(description="TI (or BTI for a book).")
    abstract: str | None = None
    other_abstracts: list[str] = Field(default_factory=list, description="OAB")
    transliterated_title: str | None = Field(None, description="TT")

    authors: list[Author] = Field(default_factory=list)
    corporate_authors: list[str] = Field(default_factory=list, description="CN")
    investigators: list[Author] = Field(default_factory=list, description="FIR/IR with IRAD")

    mesh: list[MeshHeading] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list, description="OT")
    substances: list[Substance] = Field(default_factory=list, description="RN and NM")
    publication_types: list[str] = Field(default_factory=list, description="PT")
    languages: list[str] = Field(default_factory=list, description="LA")
    grants: list[Grant] = Field(default_factory=list, description="GR")
    journal: Journal = Field(default_factory=Journal)

    pub_date: PublicationDate | None = Field(None, description="DP")
    electronic_pub_date: dt.date | None = Field(None, description="DEP")
    completed: dt.date | None = Field(None, description="DCOM")
    revised: dt.date | None = Field(None, description="LR")
    entrez_date: dt.datetime | None = Field(None, description="EDAT")
    mesh_date: dt.datetime | None = Field(None, description="MHDA")
    created: dt.datetime | None = Field(None, description="CRDT")
    history: list[HistoryEvent] = Field(default_factory=list, description="PHST")

    doi: str | None = None
    pii: str | None = None
    pmc: str | None = Field(None, description="PMC")
    article_ids: list[TypedValue] = Field(default_factory=list, description="AID and LID")

    status: str | None = Field(None, description="STAT")
    owner: str | None = Field(None, description="OWN")
    publication_status: str | None = Field(None, description="PST")
    subsets: list[str] = Field(default_factory=list, description="SB")
    source: str | None = Field(None, description="SO")

    extra: dict[str, list[str]] = Field(
        default_factory=dict, description="Every tag the model does not map, values in order."
    )

    def index_json(self) -> bytes:
        """The JSON body that is indexed (None fields left out), straight from pydantic-core."""
        return self.__pydantic_serializer__.to_json(self, exclude_none=True)

    def index_body(self) -> dict[str, Any]:
        """:meth:`index_json` as a dict."""
        return self.model_dump(mode="json", exclude_none=True)

    def revision_version(self) -> int:
        """The citation's revision as an external version: LR (else DCOM) as YYYYMMDD, else 0.

        A redelivered or older revision then never overwrites a newer one in the index.
        """
        moment = self.revised or self.completed
        return moment.year * 10000 + moment.month * 100 + moment.day if moment else 0
