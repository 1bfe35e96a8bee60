"""Errors the program raises on purpose, each with a message an operator can act on."""

from __future__ import annotations

from typing import Any


class MedlineIngestError(Exception):
    """Base of every error this program raises on purpose."""


class RecordError(MedlineIngestError):
    """A record that cannot become a document: it goes to the ``malformed`` dead-letter queue.

    :param reason: one sentence in plain words, e.g. "field 'pmid': must be digits only".
    :param errors: per-field details, each ``{"field": ..., "message": ..., "value": ...}``.
    :param pmid: the record's PMID when it could be read, to help find it upstream.
    """

    def __init__(
        self, reason: str, errors: list[dict[str, Any]] | None = None, pmid: str | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.errors = errors or []
        self.pmid = pmid


class MedlineParseError(RecordError):
    """The record's text is not in the MEDLINE format (no PMID line, garbage, ...)."""


class ConfigurationError(MedlineIngestError):
    """A setting or an argument is wrong; the message says which and why."""


class ServiceUnavailable(MedlineIngestError):
    """Redis or Elasticsearch cannot be reached; the message names which, without credentials."""
