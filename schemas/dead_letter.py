"""Dead-letter entries: what could not be indexed, with what it takes to replay it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal
from uuid import uuid4

from pydantic import BaseModel, Field

from schemas.messages import RawRecord, RecordFormat

#: The dead-letter queues. ``malformed``: the record failed parsing or validation.
#: ``rejected``: Elasticsearch refused the document (4xx). ``exhausted``: the whole batch could
#: not be indexed within the retry budget, or kept killing its worker.
DeadLetterQueue = Literal["malformed", "rejected", "exhausted"]
DEAD_LETTER_QUEUES: tuple[DeadLetterQueue, ...] = ("malformed", "rejected", "exhausted")


class FieldError(BaseModel):
    """One thing wrong with one field of a record."""

    field: str = Field(description="Document field (dotted path) or MEDLINE tag.")
    message: str = Field(description="What was wrong, in plain words.")
    value: Any = Field(None, description="The offending value, shortened.")


class DeadLetter(BaseModel):
    """One entry of a dead-letter queue.

    ``malformed`` and ``rejected`` entries hold one record; ``exhausted`` entries hold the raw
    batch. ``records`` is what a replay sends back through the pipeline.
    """

    id: str = Field(default_factory=lambda: uuid4().hex)
    queue: DeadLetterQueue
    reason: str = Field(description="Why it was dead-lettered, one sentence.")
    errors: list[FieldError] = Field(default_factory=list)
    job_id: str
    batch_id: str
    source: str
    format: RecordFormat = "medline"
    records: list[RawRecord] = Field(description="The raw input: one record, or the whole batch.")
    pmid: str | None = None
    document: dict[str, Any] | None = Field(
        None, description="The document Elasticsearch refused (rejected only)."
    )
    es_error: dict[str, Any] | None = Field(
        None, description="Elasticsearch's error for the document (rejected only)."
    )
    attempts: int = Field(1, description="Deliveries or retries spent before giving up.")
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def offset(self) -> int | None:
        """Byte offset of the first record in its source."""
        return self.records[0].offset if self.records else None
