"""Streaming parser of PubMed's MEDLINE text format (``.txt``, ``.nbib`` exports).

Two layers, both linear in the input, with no regular expression that can backtrack more than
a few characters:

- :func:`iter_raw_records` splits a byte stream into raw records with their byte offsets,
  reading fixed-size chunks (constant memory). A record ends at a blank line or where the next
  one starts; a record starts at ``PMID- `` followed by a digit, at the start of a line or,
  in collapsed text, after whitespace inside a line.
- :func:`parse_fields` splits one record into ``(tag, value)`` pairs in order. Line-structured
  records: a line is a tag padded to four columns, ``- `` and the value; a line starting with
  spaces continues the previous value. Collapsed records (no line structure left): fields
  start only at tags of the known MEDLINE tag set, written as a collapsed padded tag
  (``PMID- ``, ``OWN - ``, ``LR - ``).

Whitespace inside values is normalised the same way in both forms: every run of ASCII
whitespace becomes one space, and values are trimmed. That is what makes a collapsed record
and its line-structured form give the same fields.
"""

from __future__ import annotations

import gzip
import io
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from schemas.messages import RawRecord
from worker import native
from worker.errors import MedlineParseError
from worker.medline_tags import KNOWN_TAGS

#: Bytes that mark a gzip stream.
GZIP_MAGIC = b"\x1f\x8b"
#: Byte-order mark some Windows tools put before UTF-8 text; skipped like whitespace.
UTF8_BOM = b"\xef\xbb\xbf"
#: Read buffer of :func:`open_source`.
READ_BUFFER = 1 << 20
#: Bytes read from the stream at a time by :func:`iter_raw_records`.
CHUNK_SIZE = 1 << 20
#: A record still growing past this many bytes is cut and yielded in pieces, so that a file
#: with no record boundary at all (a binary file, say) cannot exhaust memory. Far above any
#: real citation; the pieces are dead-lettered as malformed or too large downstream.
MAX_RECORD_BYTES = 64 << 20
#: Characters of a record quoted in an error message.
QUOTE_LIMIT = 60
#: ASCII whitespace: the only characters the format treats as blanks (a no-break space or
#: an ideographic space inside a name is content, and is kept).
WHITESPACE = " \t\r\n\f\v"

# --- splitting a stream into records ------------------------------------------------------

#: A blank line: a newline, optional blanks, a newline.
_BLANK_LINE = re.compile(rb"\n[ \t\r\f\v]*\n")
#: Bytes looked at again at the end of a buffer once more data arrives, so that a record
#: start split across two reads ("PMI" | "D- 1") is found: len(b"PMID-  1").
_RESCAN = 8
#: The start of a line that holds a field of a line-structured record (not a PMID).
_TAG_LINE_HEAD = re.compile(rb"[A-Z]{2,4} *- ")
_SPACE_BYTES = frozenset(b" \t\r\n\f\v")
_BLANK_BYTES = b" \t\r\n\f\v"


def open_source(path: str | Path) -> BinaryIO:
    """Open a file for streaming: gzip (by its magic bytes, not its name) or plain.

    :param path: the file to read.
    :returns: a buffered binary stream that supports ``peek``; the caller closes it.
    :raises OSError: the file cannot be opened or read.
    """
    raw = open(path, "rb", buffering=READ_BUFFER)  # noqa: SIM115 - returned to the caller
    try:
        head = raw.peek(2)[:2]
    except BaseException:
        raw.close()
        raise
    if head == GZIP_MAGIC:
        return io.BufferedReader(gzip.GzipFile(fileobj=raw), buffer_size=READ_BUFFER)  # type: ignore[arg-type]
    return raw


class _Splitter:
    """State of :func:`iter_raw_records` over one stream.

    ``buffer`` holds the bytes from stream offset ``base`` on; everything before ``start``
    (the first byte of the record being read, or of the stream) has been yielded already.
    Records are cut at record starts first (``bytes.find``, C speed); only then is each one
    looked at for blank lines inside it, which are rare.
    """

    def __init__(self, max_record_bytes: int) -> None:
        self.buffer = bytearray()
        self.base = 0
        self.start = 0
        self.max_record_bytes = max_record_bytes
        # Absolute offset from which to look for the next "PMID-".
        self.pmid_from = 0
        # The line whose verdict (may a "PMID-" inside it start a record?) was last worked
        # out, by its absolute offset, and that verdict.
        self.line_start = -1
        self.line_allows_records = True
        # Length of a byte-order mark at the start of the stream (0 or 3).
        self.bom = 0

    # A "PMID-" inside a line starts a record only in collapsed text. A line that is a
    # continuation (indented) or another field of a line-structured record never holds one:
    # "AB  - ... see PMID- 123 ..." is text.
    def _line_allows_records(self, at: int) -> bool:
        buffer = self.buffer
        # Look back no further than the record being read, so the scan stays linear: if its
        # first byte is on this line, the verdict for this line is known already (a record
        # start sets it).
        newline = buffer.rfind(b"\n", self.start, at)
        if newline < 0 and (self.base or self.start):
            return self.line_allows_records
        line_start = newline + 1
        absolute = self.base + line_start
        if absolute != self.line_start:
            if absolute == 0:
                line_start += self.bom
            head = bytes(buffer[line_start : line_start + 6])
            indented = head[:1] in (b" ", b"\t")
            other_field = bool(_TAG_LINE_HEAD.match(head)) and not head.startswith(b"PMID")
            self.line_start = absolute
            self.line_allows_records = not (indented or other_field)
        return self.line_allows_records

    def _is_record_start(self, at: int, end: int) -> bool:
        """Whether the ``PMID-`` at buffer position ``at`` (> 0) starts a record."""
        buffer = self.buffer
        absolute = self.base + at
        at_line_start = absolute == self.bom or buffer[at - 1] == 0x0A
        if not at_line_start and buffer[at - 1] not in _SPACE_BYTES:
            return False
        # "PMID-", an optional space, a digit.
        following = buffer[at + 5]
        if following == 0x20:
            following = buffer[at + 6]
        if not 0x30 <= following <= 0x39:
            return False
        if at_line_start:
            # This line begins with a record: PMIDs further along it start records too.
            self.line_start = absolute
            self.line_allows_records = True
            return True
        return self._line_allows_records(at)

    def _next_start(self, end: int) -> int:
        """Buffer position of the next record start before ``end``, or -1."""
        buffer = self.buffer
        position = max(self.pmid_from - self.base, self.start + 1)
        while True:
            at = buffer.find(b"PMID-", position, end)
            if at < 0 or at + 7 > end:
                # Nothing (complete) here: look again at the tail once more bytes are in.
                self.pmid_from = self.base + (at if at >= 0 else max(position, end - _RESCAN))
                return -1
            if self._is_record_start(at, end):
                self.pmid_from = self.base + at + 5
                return at
            position = at + 5

    def _cut(self, stop: int) -> Iterator[RawRecord]:
        """The records in ``buffer[start:stop]``: one, or several where blank lines part it
        (text after a blank line that is not a record is yielded too, to be dead-lettered)."""
        begin = self.base + self.start
        segment = bytes(self.buffer[self.start : stop])
        self.start = stop
        if begin == 0 and self.bom:
            segment, begin = segment[self.bom :], self.bom
        content = segment.rstrip(_BLANK_BYTES)
        if not content:
            return
        blank = _BLANK_LINE.search(content)
        if blank is None:  # the usual case: one record
            yield from self._record(content, begin)
            return
        position = 0
        while blank is not None:
            yield from self._record(content[position : blank.start()], begin + position)
            position = blank.end() - 1
            blank = _BLANK_LINE.search(content, position)
        yield from self._record(content[position:], begin + position)

    @staticmethod
    def _record(data: bytes, offset: int) -> Iterator[RawRecord]:
        text = data.lstrip(_BLANK_BYTES)
        if text:
            yield RawRecord(
                offset=offset + len(data) - len(text),
                text=text.rstrip(_BLANK_BYTES).decode("utf-8", errors="replace"),
            )

    def records(self, stream: BinaryIO, chunk_size: int) -> Iterator[RawRecord]:
        buffer = self.buffer
        first = True
        while True:
            chunk = stream.read(chunk_size)
            buffer += chunk
            if first:
                if len(buffer) < len(UTF8_BOM) and chunk:
                    continue  # too little yet to tell whether a byte-order mark is there
                first = False
                if buffer.startswith(UTF8_BOM):
                    self.bom = len(UTF8_BOM)
            end = len(buffer)
            while (at := self._next_start(end)) >= 0:
                yield from self._cut(at)
            if not chunk:
                break
            if end - self.start > self.max_record_bytes:
                yield from self._cut(end - _RESCAN)
            # Drop what has been yielded; keep the record being read.
            if self.start:
                del buffer[: self.start]
                self.base += self.start
                self.start = 0
        yield from self._cut(len(buffer))


def iter_raw_records(
    stream: BinaryIO, chunk_size: int = CHUNK_SIZE, max_record_bytes: int = MAX_RECORD_BYTES
) -> Iterator[RawRecord]:
    """Split a MEDLINE byte stream into raw records, each with the offset of its first byte.

    Memory is bounded by the largest record plus one chunk. Text that is not part of a
    record -- a header before the first one, a trailer after a blank line -- is yielded as a
    record of its own, so that it is dead-lettered rather than dropped; whitespace alone is
    skipped. Invalid UTF-8 is replaced (U+FFFD), never an error.

    :param stream: binary stream, read with ``read(chunk_size)`` until it returns ``b""``.
    :param chunk_size: bytes per read.
    :param max_record_bytes: a record growing past this is yielded in pieces (see
        :data:`MAX_RECORD_BYTES`).
    :raises OSError: reading the stream failed (e.g. a truncated gzip file).
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    if native.enabled():
        return _compiled_records(stream, chunk_size, max_record_bytes)
    return _Splitter(max(max_record_bytes, 2 * _RESCAN)).records(stream, chunk_size)


def _compiled_records(
    stream: BinaryIO, chunk_size: int, max_record_bytes: int
) -> Iterator[RawRecord]:
    """:func:`iter_raw_records` by the compiled splitter (the same records, faster)."""
    for offset, text in _compiled_splits(stream, chunk_size, max_record_bytes, as_bytes=False):
        yield RawRecord(offset=offset, text=text)


def iter_record_bytes(
    stream: BinaryIO, chunk_size: int = CHUNK_SIZE, max_record_bytes: int = MAX_RECORD_BYTES
) -> Iterator[tuple[int, bytes]]:
    """:func:`iter_raw_records` as ``(offset, text)`` pairs with the text as UTF-8 bytes,
    exactly ``record.text.encode()``: what a packed batch stores. The producer batches these;
    with the compiled splitter no str is made of a record that is valid UTF-8 (nearly all),
    which took about a third of the producer's CPU time.

    Parameters and failures as :func:`iter_raw_records`.
    """
    if not native.enabled():
        records = iter_raw_records(stream, chunk_size, max_record_bytes)
        return ((record.offset, record.text.encode()) for record in records)
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    return _compiled_splits(stream, chunk_size, max_record_bytes, as_bytes=True)


def _compiled_splits(
    stream: BinaryIO, chunk_size: int, max_record_bytes: int, *, as_bytes: bool
) -> Iterator[tuple[int, Any]]:
    """``(offset, text)`` of each record by the compiled splitter; text as str or bytes."""
    splitter = native.record_splitter(max_record_bytes, as_bytes=as_bytes)
    while chunk := stream.read(chunk_size):
        yield from splitter.feed(bytes(chunk))
    yield from splitter.finish()


# --- splitting a record into fields -------------------------------------------------------

#: What each kind of parse error says (the compiled parser names the same kinds); ``{}``
#: takes the quoted text.
PARSE_ERRORS = {
    "empty": "empty record",
    "no_tag_on_first_line": "no tag on the first line: {!r}",
    "text_before_first_tag": "text before the first tag: {!r}",
    "no_tag_found": "no MEDLINE tag found in {!r}",
    "first_not_pmid": "a record must start with PMID, this one starts with {}",
}


def parse_error(kind: str, quoted: str = "") -> MedlineParseError:
    """The error for a text that is not a MEDLINE record.

    :param kind: a key of :data:`PARSE_ERRORS`.
    :param quoted: the text the message quotes (already cut to :data:`QUOTE_LIMIT`).
    """
    return MedlineParseError(PARSE_ERRORS[kind].format(quoted))


#: One field line, found after a newline (so that the regular expression engine jumps from
#: newline to newline instead of trying every character): a tag of 2 to 4 capitals, padding,
#: ``-``, a space or the end of the line, and a value that neither starts nor ends with a
#: space (a line with such a value does not match, and the slow path trims it).
_FIELD_LINE = re.compile(r"\n([A-Z]{2,4}) *-(?: |(?=\n)|\Z)(?! )([^\n]*)(?<! )")
#: The start of a field line, when a record is taken line by line (the same rule).
_FIELD_HEAD = re.compile(r"([A-Z]{2,4}) *-(?: |$)")
#: A continuation line break as PubMed writes it: a newline and six spaces.
_CONTINUATION_BREAK = "\n      "
#: A continuation line whose text starts with a dash or a seventh space.
_ODD_CONTINUATION = re.compile(r"\n      [ -]")
#: Two spaces that are not the padding of a two-letter tag ("\nAB  - "), in joined lines.
_VALUE_SPACES = re.compile(r"  (?<!\n[A-Z]{2}  )")
#: Runs of whitespace other than a lone space, to become one space.
_BLANKS = re.compile(r"[\t\r\n\f\v][ \t\r\n\f\v]*| [ \t\r\n\f\v]+")
#: A tag candidate in collapsed text: 4 capitals, or 2-3 capitals and one space, then ``- ``
#: (or ``-`` at the end). Whether it is a tag is decided by what precedes it and the known
#: tag set, in Python, for the few candidates there are.
_COLLAPSED_TAG = re.compile(r"([A-Z]{4}|[A-Z]{2,3} )-(?= |$)")


def _collapse_blanks(value: str) -> str:
    return _BLANKS.sub(" ", value).strip(" ")


def _collapsed_fields(text: str) -> list[tuple[str, str]]:
    """Fields of a record with no line structure: split at known tags only."""
    fields: list[tuple[str, str]] = []
    tag: str | None = None
    value_start = 0
    for match in _COLLAPSED_TAG.finditer(text):
        at = match.start()
        if at and text[at - 1] != " ":
            continue  # "XIVIG - ", "(AB - ": part of a word
        candidate = match.group(1).rstrip(" ")
        if candidate not in KNOWN_TAGS:
            continue
        if tag is not None:
            fields.append((tag, text[value_start:at].strip(" ")))
        elif text[:at].strip(" "):
            raise parse_error("text_before_first_tag", text[: min(at, QUOTE_LIMIT)])
        tag = candidate
        value_start = match.end()
    if tag is None:
        raise parse_error("no_tag_found", text[:QUOTE_LIMIT])
    fields.append((tag, text[value_start:].strip(" ")))
    return fields


def _line_fields(lines: list[str]) -> list[tuple[str, str]]:
    """Fields of a line-structured record, some of whose lines may have lost their indent."""
    tags: list[str] = []
    parts: list[list[str]] = []
    for line in lines:
        head = _FIELD_HEAD.match(line)
        if head is not None:
            tags.append(head.group(1))
            parts.append([line[head.end() :]])
        elif parts:
            parts[-1].append(line)  # a continuation line, or a wrapped one that lost its indent
        else:
            raise parse_error("no_tag_on_first_line", line[:QUOTE_LIMIT])
    return [(tag, _collapse_blanks(" ".join(part))) for tag, part in zip(tags, parts, strict=True)]


def _fields_slowly(text: str) -> list[tuple[str, str]]:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [line for line in text.split("\n") if line.strip(WHITESPACE)]
    if not lines:
        raise parse_error("empty")
    rest = lines[1:]
    structured = sum(1 for line in rest if line[0] in " \t" or _FIELD_HEAD.match(line))
    # One line, or lines that mostly do not start with a tag or an indent (collapsed text
    # wrapped at some width): no line structure to go by, split at known tags.
    if not rest or 2 * structured < len(rest):
        return _collapsed_fields(_collapse_blanks(" ".join(lines)))
    return _line_fields(lines)


def _fields_quickly(body: str) -> list[tuple[str, str]] | None:
    """The fields of a well-formed line-structured record, found by C code alone: None when
    the record is anything else (the slow path then gives the same answer, more slowly)."""
    if "\r" in body or "\t" in body or "\f" in body or "\v" in body:
        return None
    # Joining lines first must not make a tag line of what was not one ("AB" alone, then
    # "      - x"): no continuation may start with a dash or with more than six spaces.
    if _ODD_CONTINUATION.search(body):
        return None
    joined = "\n" + body.replace(_CONTINUATION_BREAK, " ")
    found: list[tuple[str, str]] = _FIELD_LINE.findall(joined)
    if len(found) != joined.count("\n"):
        return None  # a line that is neither a field nor a six-space continuation
    if _VALUE_SPACES.search(joined):
        return None  # a run of spaces inside a value, to normalise
    return found


def parse_fields(text: str) -> list[tuple[str, str]]:
    """The record's ``(tag, value)`` pairs in order, repeated tags kept.

    Continuation lines are joined to their field with one space; every run of whitespace in a
    value becomes one space. A record without line structure (collapsed) is split only at
    known tags (:data:`worker.medline_tags.KNOWN_TAGS`).

    :param text: one raw record.
    :raises MedlineParseError: the text is not a MEDLINE record: empty, no tag at its start,
        or a first field other than ``PMID``.
    """
    body = text.strip(WHITESPACE)
    fields = _fields_quickly(body) if "\n" in body else None
    if fields is None:
        fields = _fields_slowly(body)
    if fields[0][0] != "PMID":
        raise parse_error("first_not_pmid", fields[0][0])
    return fields


# --- printing -----------------------------------------------------------------------------

#: Line width of :func:`format_record`, as PubMed prints it.
FORMAT_WIDTH = 80
#: Indent of a continuation line.
CONTINUATION = "      "


def format_record(fields: Iterable[tuple[str, str]], width: int = FORMAT_WIDTH) -> str:
    """Print fields as a line-structured MEDLINE record, the inverse of :func:`parse_fields`.

    Each tag is padded to four columns; values longer than ``width`` wrap at spaces onto
    continuation lines indented by six spaces (a word longer than a line is not broken).

    :param fields: ``(tag, value)`` pairs; tags of 2 to 4 capital letters.
    :param width: the longest line wanted.
    :returns: the record without a trailing newline.
    """
    lines: list[str] = []
    for tag, value in fields:
        line = f"{tag:<4}-"
        # Split at spaces only: a no-break space inside a value is part of a word.
        for word in filter(None, value.split(" ")):
            # Wrap before a word that would overflow, unless the line holds no word yet.
            if len(line) + 1 + len(word) > width and len(line) > len(CONTINUATION):
                lines.append(line)
                line = CONTINUATION + word
            else:
                line += " " + word
        lines.append(line)
    return "\n".join(lines)
