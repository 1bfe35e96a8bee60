"""Streaming parser of PubMed's MEDLINE text format (``.txt``, ``.nbib`` exports).

Two layers, both linear in the input and free of backtracking regular expressions:

- :func:`iter_raw_records` splits a byte stream into raw records with their byte offsets,
  reading line by line (constant memory). A record starts at ``PMID- ``: at the start of a
  line, or after whitespace inside a line, where upstream systems ran collapsed records
  together.
- :func:`parse_fields` splits one record into ``(tag, value)`` pairs in order. Line-structured
  records: a line is a tag padded to four columns, ``- ``, and the value; a line starting with
  spaces continues the previous value (joined with one space). Collapsed records (all on one
  line): fields start only at tags of the known MEDLINE tag set.
"""

from __future__ import annotations

import gzip
import io
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from schemas.messages import RawRecord
from worker.errors import MedlineParseError
from worker.medline_tags import KNOWN_TAGS

#: Bytes that mark a gzip stream.
GZIP_MAGIC = b"\x1f\x8b"
#: Read buffer of :func:`open_source`.
READ_BUFFER = 1 << 20
#: A tag candidate inside collapsed text: 2 to 4 capitals after whitespace, an optional space,
#: ``- ``. Whether it is a tag is decided by the known tag set.
_COLLAPSED_TAG = re.compile(r"(?<![^\s])([A-Z]{2,4}) ?- ")
#: Characters of a record quoted in an error message.
QUOTE_LIMIT = 60


def open_source(path: str | Path) -> BinaryIO:
    """Open a file for streaming: gzip (by its magic bytes, not its name) or plain.

    The returned stream supports ``peek``. :raises OSError: the file cannot be read.
    """
    raw = open(path, "rb", buffering=READ_BUFFER)  # noqa: SIM115 - returned to the caller
    if raw.peek(2)[:2] == GZIP_MAGIC:
        return io.BufferedReader(gzip.GzipFile(fileobj=raw), buffer_size=READ_BUFFER)  # type: ignore[arg-type]
    return raw


#: Bytes read from the stream at a time by :func:`iter_raw_records`.
CHUNK_SIZE = 1 << 20
#: Bytes at the end of a buffer scanned again once more data arrives: a record start split
#: across two reads ("PMI" | "D- 1") is found on the second pass.
_RESCAN = 8


def _record_starts(buffer: bytes, position: int) -> Iterator[int]:
    """Positions in ``buffer`` from ``position`` on where a record starts: ``PMID-`` at the
    start or after whitespace, then an optional space and a digit. ``bytes.find`` does the
    scanning at C speed; only candidates are looked at in Python."""
    find = buffer.find
    while (at := find(b"PMID-", position)) >= 0:
        position = at + 5
        if at and not buffer[at - 1 : at].isspace():
            continue
        digit = buffer[at + 5 : at + 7].lstrip(b" ")[:1]
        if digit.isdigit():
            yield at


def _record(data: bytes, base: int) -> RawRecord | None:
    """The raw record in ``data`` (which starts at stream offset ``base``), or None if blank."""
    stripped = data.lstrip()
    if not stripped.strip():
        return None
    text = stripped.decode("utf-8", errors="replace").rstrip()
    return RawRecord(offset=base + len(data) - len(stripped), text=text)


def iter_raw_records(stream: BinaryIO, chunk_size: int = CHUNK_SIZE) -> Iterator[RawRecord]:
    """Split a MEDLINE byte stream into raw records, each with the offset of its first byte.

    Reads ``chunk_size`` bytes at a time and finds record starts with one compiled pattern
    over each chunk, so memory is bounded by the largest record plus a chunk. Text before
    the first record (a header some tools write) is yielded as a record of its own, so that
    it is dead-lettered rather than dropped; whitespace alone is skipped.
    """
    buffer = b""
    base = 0  # stream offset of buffer[0]
    scan_from = 0
    while True:
        chunk = stream.read(chunk_size)
        buffer += chunk
        cut = 0
        for start in _record_starts(buffer, scan_from):
            if start > cut:
                record = _record(buffer[cut:start], base + cut)
                if record is not None:
                    yield record
            cut = start
        if not chunk:
            break
        # Keep the record being read; look again at the tail once more bytes are in.
        buffer = buffer[cut:]
        base += cut
        scan_from = max(1, len(buffer) - _RESCAN)
    record = _record(buffer[cut:], base + cut)
    if record is not None:
        yield record


def _is_tag_line(line: str) -> bool:
    # "TAG - value" padded to four columns: the dash sits in column 5, a space after it.
    if line[4:6] != "- " and not (len(line) == 5 and line[4] == "-"):
        return False
    tag = line[:4].rstrip()
    return tag in KNOWN_TAGS or (len(tag) >= 2 and tag.isalpha() and tag.isupper())


def _normalise(value: str) -> str:
    # Only runs of whitespace need work; most values have none.
    if "  " in value or "\t" in value or "\n" in value:
        return " ".join(value.split())
    return value.strip()


def _collapsed_fields(text: str) -> list[tuple[str, str]]:
    fields: list[tuple[str, str]] = []
    tag: str | None = None
    value_start = 0
    for match in _COLLAPSED_TAG.finditer(text):
        candidate = match.group(1)
        if candidate not in KNOWN_TAGS:
            continue
        if tag is not None:
            fields.append((tag, _normalise(text[value_start : match.start()])))
        elif text[: match.start()].strip():
            raise MedlineParseError(
                f"text before the first tag: {text[: min(match.start(), QUOTE_LIMIT)]!r}"
            )
        tag = candidate
        value_start = match.end()
    if tag is not None:
        fields.append((tag, _normalise(text[value_start:])))
    return fields


def parse_fields(text: str) -> list[tuple[str, str]]:
    """The record's ``(tag, value)`` pairs in order, repeated tags kept.

    :raises MedlineParseError: the text has no MEDLINE structure, or does not begin with a
        ``PMID`` field.
    """
    body = text.strip()
    if not body:
        raise MedlineParseError("empty record")
    lines = body.splitlines()
    if len(lines) == 1 or (not _is_tag_line(lines[1]) and not lines[1].startswith(" ")):
        # One line (collapsed), or a first line that runs on into others: split on known tags.
        fields = _collapsed_fields(" ".join(lines))
    else:
        tags: list[str] = []
        parts: list[list[str]] = []
        for line in lines:
            if _is_tag_line(line):
                tags.append(line[:4].rstrip())
                parts.append([line[6:]])
            elif not line.strip():
                continue
            elif parts:
                # A continuation line (six spaces), or a line whose indentation was lost.
                parts[-1].append(line)
            else:
                raise MedlineParseError(f"no tag on the first line: {line[:QUOTE_LIMIT]!r}")
        fields = [
            (tag, _normalise(part[0]) if len(part) == 1 else " ".join(" ".join(part).split()))
            for tag, part in zip(tags, parts, strict=True)
        ]
    if not fields:
        raise MedlineParseError(f"no MEDLINE tag found in {body[:QUOTE_LIMIT]!r}")
    if fields[0][0] != "PMID":
        raise MedlineParseError(
            f"a record must start with PMID, this one starts with {fields[0][0]}"
        )
    return fields


def format_record(fields: Iterable[tuple[str, str]], width: int = 80) -> str:
    """Print fields as a line-structured MEDLINE record (values wrapped with continuation
    lines), the inverse of :func:`parse_fields`."""
    lines: list[str] = []
    for tag, value in fields:
        prefix = f"{tag:<4}- "
        words = value.split(" ")
        line = prefix
        for word in words:
            if len(line) + len(word) > width and line.strip() and line != prefix:
                lines.append(line.rstrip())
                line = "      "
            line += word + " "
        lines.append(line.rstrip() if line.strip() else prefix.rstrip())
    return "\n".join(lines)
