"""NLM's own files (``make nlm-files``, see :mod:`tests.nlm_files`): every citation is indexed,
and the compiled XML mapping gives the same document as the Python reference wherever it takes
a record. The counts are those of the pinned files; each case named here was dead-lettered,
left to the slow path or misread before 2026-12-08."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.deletion import Deletion
from schemas.document import Document
from tests import nlm_files
from tests.unit.conftest import forget_parser_choice, require_native
from worker import native, pubmed_xml
from worker.documents import KNOWN_TAGS, QUOTE_LIMIT, SIMPLE_TAGS, document_from_json
from worker.medline_text import open_source

pytestmark = pytest.mark.skipif(
    not nlm_files.present(), reason="NLM's files are not fetched (make nlm-files)"
)


@pytest.fixture(autouse=True)
def python_reference(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The reference all in Python, fields to body included; the compiled parser is built
    apart from the setting."""
    monkeypatch.setenv("MEDLINE_PARSER", "python")
    forget_parser_choice()
    yield
    forget_parser_choice()


def _check(path: Path, limit: int | None = None) -> tuple[Counter[str], dict[str, Document]]:
    """Map each record of ``path`` with both parsers; fail where they differ. Counts of what
    the records became, and the documents by PMID."""
    require_native()
    compiled = native.parser(sorted(KNOWN_TAGS), SIMPLE_TAGS, QUOTE_LIMIT)
    tables = pubmed_xml._xml_tables()
    counts: Counter[str] = Counter()
    documents = {}
    with open_source(path) as stream:
        for offset, raw in pubmed_xml.iter_xml_record_bytes(stream):
            # The reference raises RecordError, failing the test, for any record it refuses.
            reference = pubmed_xml._root_to_document(pubmed_xml._parse_bytes(raw))
            body = compiled.xml_body_json_at(raw, 0, len(raw), tables)
            if body is None:
                counts["left to Python"] += 1
            else:
                assert document_from_json(body) == reference, f"{path.name} at byte {offset}"
            if isinstance(reference, Deletion):
                counts["deletions"] += 1
            else:
                counts["documents"] += 1
                documents[reference.pmid] = reference
                if b"<ArticleTitle/>" in raw:
                    # No English title: indexed under the vernacular one, if any.
                    assert reference.title == reference.transliterated_title
                    counts["no English title"] += 1
            if limit is not None and sum(counts[k] for k in ("documents", "deletions")) == limit:
                break
    return counts, documents


def test_every_record_of_a_daily_update_is_indexed_alike_by_both_parsers() -> None:
    counts, documents = _check(nlm_files.path(nlm_files.UPDATE))

    # Left to Python: 20 deletions and 27 records with formulas (MathML); the 429 with a
    # processing instruction (<?pmcsd ?>) are no longer.
    # 53 citations titled only in <VernacularTitle>, and an erratum with no title at all.
    assert counts == {
        "documents": 20_788,
        "deletions": 20,
        "left to Python": 47,
        "no English title": 54,
    }
    assert documents["32472320"].title == "Briefsammlung Wittelshöfer."
    assert documents["33977567"].title is None
    # Formulas read as MathML renders them, not a token at a time.
    assert documents["33780037"].title == (
        "Free-breathing simultaneous T1 , T2 , and T2\u2217 quantification in the myocardium."
    )


def test_the_first_records_of_a_baseline_file_are_indexed_alike_by_both_parsers() -> None:
    counts, documents = _check(nlm_files.path(nlm_files.BASELINE), limit=5_000)

    assert counts == {"documents": 5_000}
    assert all(document.title for document in documents.values())
