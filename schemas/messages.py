"""Messages that cross the Redis broker. Only JSON crosses it; these models are its shape.

The broker carries a :class:`BatchRef` per batch; the batch itself (:class:`BatchMessage`, the
raw records) is written once, to the job's pending hash in Redis, before its reference is
published (see :mod:`worker.jobs`). A worker still accepts a whole :class:`BatchMessage` as a
task argument, which is what producers before the reference sent.
"""

from __future__ import annotations

from typing import Literal

import orjson
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

    def to_json(self) -> bytes:
        """The batch as JSON, the same document :meth:`model_dump_json` writes.

        orjson escapes the records' long texts faster than pydantic's serializer: 3.0 µs a
        record against 5.4 (``tests/benchmarks/bench_broker.py``).
        """
        return orjson.dumps(self.model_dump())

    @classmethod
    def from_json(cls, data: bytes | str) -> BatchMessage:
        """Validate a batch written by :meth:`to_json` (or :meth:`model_dump_json`).

        orjson decodes, the model validates the result: 3.5 µs a record against 4.3 for
        :meth:`model_validate_json` (``tests/benchmarks/bench_broker.py``).

        :raises pydantic.ValidationError: the JSON is not a batch (malformed JSON included).
        """
        try:
            decoded = orjson.loads(data)
        except orjson.JSONDecodeError:
            return cls.model_validate_json(data)  # raises, with pydantic's own message
        return cls.model_validate(decoded)


class BatchRef(BaseModel):
    """What the broker carries for a batch: its ids. The worker reads the batch itself from the
    job's pending hash, where the producer put it before publishing this reference."""

    job_id: str
    batch_id: str
