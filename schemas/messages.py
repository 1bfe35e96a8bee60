"""Messages that cross the Redis broker. Only JSON crosses it; these models are its shape."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: Input formats a batch can carry; the worker picks the parser by this field.
RecordFormat = Literal["medline", "pubmed-xml"]


class RawRecord(BaseModel):
    """One record as it was read from its source, before parsing."""

    model_config = ConfigDict(frozen=True)

    offset: int = Field(ge=0, description="Byte offset of the record's first byte in its source.")
    text: str = Field(
        description="The record's raw text, decoded as UTF-8 (invalid bytes replaced)."
    )


class BatchMessage(BaseModel):
    """A batch of raw records from one source, the unit of work of a worker task."""

    job_id: str
    batch_id: str = Field(description="Unique within the job; stable across redeliveries.")
    source: str = Field(description="Where the records came from: a path, or '-' for stdin.")
    format: RecordFormat = "medline"
    records: list[RawRecord]
    replay_of: str | None = Field(
        None, description="Dead-letter entry id when the batch replays a dead letter."
    )
