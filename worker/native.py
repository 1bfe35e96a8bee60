"""The compiled MEDLINE parser, ``worker._native``, built from ``worker/native/`` (Rust).

It does what :func:`worker.medline_text.parse_fields` and :func:`worker.documents` mapping
do -- those Python functions are the reference, and the fallback when the extension is not
built -- and hands back the index body as JSON bytes, which the pydantic model then
validates (:meth:`schemas.document.Document.from_json`). The format's tables (the MEDLINE
tag set, the simply mapped tags) are given to it from Python, so they are written once.

``MEDLINE_PARSER`` picks: ``auto`` (compiled when built), ``native`` (refuse to run
without it) or ``python``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.errors import ConfigurationError
from worker.medline_tags import KNOWN_TAGS
from worker.medline_text import QUOTE_LIMIT

try:
    from worker import _native  # type: ignore[attr-defined]
except ImportError:  # not built: pip installed it without a Rust toolchain
    _native = None

#: Whether the compiled extension is importable.
BUILT = _native is not None
#: What the compiled parser raises for text that is not a record: args ``(kind, quoted)``,
#: worded by :func:`worker.medline_text.parse_error`.
ParseError: type[Exception] = _native.ParseError if _native is not None else ValueError


def load(mode: str, simple_tags: Mapping[str, tuple[int, str]]) -> Any | None:
    """The compiled parser for ``mode`` (``auto``, ``native``, ``python``), or None for the
    Python one.

    :param simple_tags: tag → (kind code, document field), :data:`worker.documents.SIMPLE_TAGS`.
    :raises ConfigurationError: ``native`` was asked for and the extension is not built.
    """
    if mode == "python" or (mode == "auto" and _native is None):
        return None
    if _native is None:
        raise ConfigurationError(
            "MEDLINE_PARSER=native but the compiled parser is not built: reinstall with a Rust "
            "toolchain (cargo) on PATH, or set MEDLINE_PARSER=auto"
        )
    return _native.Parser(sorted(KNOWN_TAGS), dict(simple_tags), QUOTE_LIMIT)
