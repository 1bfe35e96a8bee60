"""The compiled MEDLINE code, ``worker._native``, built from ``worker/native/`` (Rust).

It does what :mod:`worker.medline_text` (splitting a stream into records, a record into
fields), :mod:`worker.documents` (fields to the index body) and the mapping of
:mod:`worker.pubmed_xml` (a PubMed XML record to fields) do -- those Python modules are the
reference, and the fallback when the extension is not built -- and hands back the index
body as JSON bytes, which the pydantic model then validates
(:meth:`schemas.document.Document.from_json`). The format's tables (the MEDLINE tag set, the
simply mapped tags) are given to it from Python, so they are written once.

``MEDLINE_PARSER`` picks: ``auto`` (compiled when built), ``native`` (refuse to run without
it) or ``python``.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from worker.errors import ConfigurationError
from worker.settings import get_settings

try:
    from worker import _native  # type: ignore[attr-defined]
except ImportError:  # not built: pip installed it without a Rust toolchain
    _native = None

#: Whether the compiled extension is importable.
BUILT = _native is not None
#: What the compiled parser raises for text that is not a record: args ``(kind, quoted)``,
#: worded by :func:`worker.medline_text.parse_error`.
ParseError: type[Exception] = _native.ParseError if _native is not None else ValueError


def wanted(mode: str) -> bool:
    """Whether ``mode`` (``auto``, ``native``, ``python``) means the compiled code.

    :raises ConfigurationError: ``native`` was asked for and the extension is not built.
    """
    if mode == "python" or (mode == "auto" and _native is None):
        return False
    if _native is None:
        raise ConfigurationError(
            "MEDLINE_PARSER=native but the compiled parser is not built: reinstall with a Rust "
            "toolchain (cargo) on PATH, or set MEDLINE_PARSER=auto"
        )
    return True


@cache
def enabled() -> bool:
    """Whether to use the compiled code, as ``MEDLINE_PARSER`` says. Worked out once;
    ``enabled.cache_clear()`` makes it look again.

    :raises ConfigurationError: see :func:`wanted`.
    """
    return wanted(get_settings().parser)


def parser(known_tags: list[str], simple_tags: dict[str, tuple[int, str]], quote_limit: int) -> Any:
    """A compiled parser given the format's tables (only when :func:`enabled`).

    :param known_tags: the MEDLINE tag set (collapsed text splits at these only).
    :param simple_tags: tag → (kind code, document field), as :mod:`worker.documents` has it.
    :param quote_limit: characters of a record quoted in an error.
    """
    assert _native is not None
    return _native.Parser(known_tags, simple_tags, quote_limit)


def record_splitter(max_record_bytes: int, as_bytes: bool = False) -> Any:
    """A compiled record splitter: ``feed(chunk)`` and ``finish()`` give ``(offset, text)``
    pairs (only when :func:`enabled`).

    :param as_bytes: give each text as UTF-8 bytes (``text.encode()`` of the str it gives
        otherwise), without making a str of it.
    """
    assert _native is not None
    return _native.RecordSplitter(max_record_bytes, as_bytes)


def xml_tables(
    months: dict[str, int],
    month_names: dict[int, str],
    comment_tags: dict[str, str],
    skipped_ref_types: list[str],
    stamp_tags: list[tuple[str, str]],
    version_max: int,
) -> Any:
    """The PubMed XML format's tables for the compiled parser's ``xml_fields`` and
    ``xml_body_json_at`` (only when :func:`enabled`); see :mod:`worker.pubmed_xml`."""
    assert _native is not None
    return _native.XmlTables(
        months, month_names, comment_tags, skipped_ref_types, stamp_tags, version_max
    )
