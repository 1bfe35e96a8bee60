"""A deletion: a record that removes a citation from the index instead of writing one."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Deletion(BaseModel):
    """PubMed's ``DeleteCitation`` for one PMID. Counted as ``deleted`` in the job's accounting."""

    pmid: str = Field(pattern=r"^[0-9]+$", description="The citation to delete.")
