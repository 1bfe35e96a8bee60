"""A deletion: a record that removes a citation from the index instead of writing one."""

from __future__ import annotations

from pydantic import BaseModel, Field

from schemas.document import PMID_VERSION_MAX, PMID_VERSION_STEP


class Deletion(BaseModel):
    """PubMed's ``DeleteCitation`` for one PMID. Counted as ``deleted`` in the job's accounting,
    or as ``skipped_stale`` when the index holds a later version of the citation."""

    pmid: str = Field(pattern=r"^[0-9]+$", description="The citation to delete.")
    pmid_version: int = Field(
        1,
        ge=1,
        le=PMID_VERSION_MAX,
        description="The version deleted (``<PMID Version>``); 1 unless versioned.",
    )

    def external_version(self) -> int:
        """The delete's external version: at or above every revision of this PMID version and
        of the ones before it, below every revision of the next
        (:meth:`~schemas.document.Document.revision_version`). NLM may delete one version of a
        versioned citation; the index then keeps a later one it holds."""
        return self.pmid_version * PMID_VERSION_STEP - 1
