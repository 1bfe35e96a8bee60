"""Messages that cross the Redis broker, and how a batch is stored. Only JSON crosses the
broker; these models are its shape.

The broker carries a :class:`BatchRef` per batch; the batch itself (:class:`BatchMessage`, the
raw records) is written once, to the job's pending hash in Redis, before its reference is
published (see :mod:`worker.jobs`), packed (:class:`PackedBatch`): a JSON head, then the
records' text as UTF-8, back to back, or that text as one LZ4 frame when the producer
compresses (``MEDLINE_BATCH_COMPRESSION=lz4``; the head stays JSON and says so). A worker still
accepts a whole :class:`BatchMessage` as a task argument, which is what producers before the
reference sent, and a stored batch written as :meth:`BatchMessage.to_json`, as producers before
packing stored it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import lz4.frame
import orjson
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, ValidationError, model_validator

#: Input formats a batch can carry; the worker picks the parser by this field.
RecordFormat = Literal["medline", "pubmed-xml"]
#: How a stored batch's text is stored: ``none``, as is; ``lz4``, one LZ4 frame of all of it.
BatchCompression = Literal["none", "lz4"]


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


def _stored_batch_error(field: str, found: int, error: str) -> ValidationError:
    """The error for a stored batch whose head does not fit what follows it."""
    return ValidationError.from_exception_data(
        "PackedBatch",
        [{"type": "value_error", "loc": (field,), "input": found, "ctx": {"error": error}}],
    )


class BatchRef(BaseModel):
    """What the broker carries for a batch: its ids. The worker reads the batch itself from the
    job's pending hash, where the producer put it before publishing this reference."""

    job_id: str
    batch_id: str


#: Separates a packed batch's JSON head from its records' text (compact JSON has no newline).
PACKED_SEPARATOR = b"\n"


class BatchHead(BaseModel):
    """The JSON head of a packed batch: the batch without its records' text, and where each
    record's text lies in what follows the head."""

    job_id: str
    batch_id: str
    source: str
    format: RecordFormat = "medline"
    replay_of: str | None = None
    offsets: list[NonNegativeInt] = Field(
        description="Each record's byte offset in its source (RawRecord.offset), in order."
    )
    sizes: list[NonNegativeInt] = Field(
        description="Each record's text in UTF-8 bytes, in order, back to back after the head."
    )
    # None rather than "none", so that an uncompressed batch's head is what it always was.
    compression: Literal["lz4"] | None = Field(
        None, description="How the text after the head is stored: as is (None) or one LZ4 frame."
    )

    @model_validator(mode="after")
    def _one_size_per_offset(self) -> BatchHead:
        if len(self.offsets) != len(self.sizes):
            raise ValueError(f"{len(self.offsets)} offsets but {len(self.sizes)} sizes")
        return self


@dataclass(frozen=True)
class PackedBatch:
    """A batch as the pending hash stores it and the worker reads it: :class:`BatchHead` as
    JSON, a newline, then the records' text as UTF-8, back to back (stored as one LZ4 frame
    when the head's ``compression`` says ``lz4``; :attr:`data` always holds it uncompressed).

    A worker parses each record where it lies in ``data`` and decodes a record's text only to
    dead-letter it. Stored as :meth:`BatchMessage.to_json`, each record's text was a JSON string
    the worker decoded and then encoded to UTF-8 again for the compiled parser: 6.4 µs per
    record, against 0.1 to read a packed batch's head (the producer's write: 1.7 against 1.4;
    ``tests/benchmarks/bench_broker.py``).

    :param head: the head, validated.
    :param data: the head and the records' text, uncompressed: what the worker parses.
    :param base: where the records' text starts in ``data``.
    :param compressed: the stored value when it differs from ``data`` (text compressed).
    """

    head: BatchHead
    data: bytes
    base: int
    compressed: bytes | None = None

    @property
    def stored(self) -> bytes:
        """What the pending hash stores: ``data``, or its compressed form."""
        return self.data if self.compressed is None else self.compressed

    @property
    def job_id(self) -> str:
        return self.head.job_id

    @property
    def batch_id(self) -> str:
        return self.head.batch_id

    @property
    def source(self) -> str:
        return self.head.source

    @property
    def format(self) -> RecordFormat:
        return self.head.format

    @property
    def replay_of(self) -> str | None:
        return self.head.replay_of

    def __len__(self) -> int:
        return len(self.head.offsets)

    def spans(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, int, int]]:
        """``(offset, begin, end)`` of records ``start`` to ``stop``: the record's offset in
        its source and its text's bytes, ``data[begin:end]``."""
        sizes = self.head.sizes
        begin = self.base + sum(sizes[:start])
        for offset, size in zip(self.head.offsets[start:stop], sizes[start:stop], strict=True):
            yield offset, begin, begin + size
            begin += size

    def raw_record(self, position: int) -> RawRecord:
        """Record ``position`` as the producer read it (invalid UTF-8, which only a damaged
        stored value holds, replaced)."""
        offset, begin, end = next(self.spans(position, position + 1))
        return RawRecord(offset=offset, text=self.data[begin:end].decode("utf-8", "replace"))

    @property
    def records(self) -> list[RawRecord]:
        """Every record, decoded (for a dead letter that keeps the whole batch)."""
        data = self.data
        return [
            RawRecord(offset=offset, text=data[begin:end].decode("utf-8", "replace"))
            for offset, begin, end in self.spans()
        ]

    def to_message(self) -> BatchMessage:
        """The batch as a :class:`BatchMessage`."""
        head = self.head
        return BatchMessage(
            job_id=head.job_id,
            batch_id=head.batch_id,
            source=head.source,
            format=head.format,
            records=self.records,
            replay_of=head.replay_of,
        )

    @classmethod
    def pack(
        cls,
        *,
        job_id: str,
        batch_id: str,
        source: str,
        format: RecordFormat,
        offsets: list[int],
        texts: list[bytes],
        replay_of: str | None = None,
        compression: BatchCompression = "none",
    ) -> PackedBatch:
        """A batch of the records ``texts`` (UTF-8), read at ``offsets`` of ``source``; its
        :attr:`stored` is what the pending hash stores.

        :param compression: store the text as one LZ4 frame (``lz4``) or as is (``none``).
        :raises pydantic.ValidationError: an offset is negative, or there are not as many
            offsets as texts.
        """
        head = BatchHead(
            job_id=job_id,
            batch_id=batch_id,
            source=source,
            format=format,
            replay_of=replay_of,
            offsets=offsets,
            sizes=[len(text) for text in texts],
            compression=None if compression == "none" else compression,
        )
        head_json = orjson.dumps(head.model_dump(exclude_none=True))
        base = len(head_json) + 1
        data = b"".join([head_json, PACKED_SEPARATOR, *texts])
        if compression == "none":
            return cls(head, data, base)
        frame = lz4.frame.compress(memoryview(data)[base:])
        return cls(head, data, base, b"".join([head_json, PACKED_SEPARATOR, frame]))

    @classmethod
    def from_message(
        cls, batch: BatchMessage, compression: BatchCompression = "none"
    ) -> PackedBatch:
        """``batch`` packed; :attr:`stored` is what the pending hash stores.

        :param compression: as :meth:`pack`'s.
        """
        return cls.pack(
            job_id=batch.job_id,
            batch_id=batch.batch_id,
            source=batch.source,
            format=batch.format,
            offsets=[record.offset for record in batch.records],
            texts=[record.text.encode() for record in batch.records],
            replay_of=batch.replay_of,
            compression=compression,
        )

    @classmethod
    def unpack(cls, data: bytes) -> PackedBatch:
        """Read a stored batch: packed, or (as producers before packing stored it) the JSON of
        a :class:`BatchMessage`.

        :raises pydantic.ValidationError: ``data`` is neither, its compressed text is not an
            LZ4 frame, or its sizes do not add up to the text that follows its head.
        """
        cut = data.find(PACKED_SEPARATOR)
        if cut < 0:
            return cls.from_message(BatchMessage.from_json(data))
        head = BatchHead.model_validate_json(data[:cut])
        compressed = None
        if head.compression == "lz4":
            try:
                text = lz4.frame.decompress(memoryview(data)[cut + 1 :])
            except RuntimeError as exc:  # what python-lz4 raises for a damaged frame
                raise _stored_batch_error("compression", len(data) - cut - 1, str(exc)) from None
            compressed, data = data, b"".join([data[: cut + 1], text])
        if sum(head.sizes) != len(data) - cut - 1:
            raise _stored_batch_error(
                "sizes",
                len(data) - cut - 1,
                f"the sizes add up to {sum(head.sizes)} bytes but {len(data) - cut - 1} "
                "follow the head",
            )
        return cls(head, data, cut + 1, compressed)
