"""PubMed XML end to end: real broker, real worker processes, real Elasticsearch.

Same citation as text and as XML → the same indexed document; a record that is invalid or not
well-formed is dead-lettered with its text and offset, and the rest of its file indexed; an
update file revises and deletes; a stale revision arriving last, of an article or of a book
chapter, does not win and is counted, not dead-lettered; a later version of a versioned
citation wins over any revision of an earlier one, and the delete of an earlier version
leaves it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from schemas.job import JobSummary
from tests.helpers import DATA, run_cli
from tests.integration.conftest import Stack, WorkerFactory
from tests.pubmed_records import article_set, pubmed_article, pubmed_book_article, write_xml

#: Seconds a whole job may take in these tests before they fail.
JOB_TIMEOUT = 300


def ingest(stack: Stack, path: Path, *args: str) -> JobSummary:
    """``enqueue PATH --wait`` through the CLI; the job's full summary."""
    proc = run_cli(
        "enqueue",
        str(path),
        "--wait",
        "--timeout",
        str(JOB_TIMEOUT),
        *args,
        env=stack.env,
        check=True,
        timeout=JOB_TIMEOUT + 60,
    )
    summary = stack.jobs.get(json.loads(proc.stdout)["job_id"])
    assert summary is not None and summary.state == "completed", summary
    return summary


def sources(stack: Stack) -> dict[str, dict[str, Any]]:
    stack.refresh()
    response = stack.es.search(index=stack.settings.index, size=1000, query={"match_all": {}})
    return {hit["_id"]: hit["_source"] for hit in response["hits"]["hits"]}


def test_the_same_citations_as_text_and_as_xml_index_the_same_documents(
    stack: Stack, workers: WorkerFactory
) -> None:
    workers.start(concurrency=2)

    from_text = ingest(stack, DATA / "pubmed-baseline-sample.medline")
    assert (from_text.records, from_text.indexed) == (3, 3)
    indexed_from_text = sources(stack)
    assert sorted(indexed_from_text) == ["12559498", "31071234", "9512345"]

    # The same revisions again, from XML: written over (same version), not skipped.
    from_xml = ingest(stack, DATA / "pubmed-baseline-sample.xml", "--batch-records", "1")
    assert (from_xml.records, from_xml.indexed, from_xml.skipped_stale) == (3, 3, 0)
    assert from_xml.dead_lettered == 0
    assert sources(stack) == indexed_from_text
    seed = indexed_from_text["12559498"]
    assert seed["revised"] == "2019-07-24"
    assert seed["mesh"][-1] == {
        "descriptor": "Multiple Sclerosis",
        "qualifiers": ["pathology", "therapy"],
        "major": True,
        "major_qualifiers": ["therapy"],
    }


@pytest.mark.parametrize(
    ("record", "revised_field"),
    [(pubmed_article, "revised"), (pubmed_book_article, "book_revised")],
    ids=["article", "book"],
)
def test_an_update_file_revises_and_deletes_and_a_stale_revision_does_not_win(
    stack: Stack,
    workers: WorkerFactory,
    tmp_path: Path,
    record: Callable[..., str],
    revised_field: str,
) -> None:
    workers.start(concurrency=2)
    baseline = write_xml(
        tmp_path / "pubmed25n0001.xml.gz",
        article_set([record(p, revised="20200101") for p in range(501, 506)]),
    )
    update = write_xml(
        tmp_path / "pubmed25n1275.xml",
        article_set(
            [record(502, title="Revised title of 502.", revised="20240601")], deletes=[503]
        ),
    )
    stale = write_xml(
        tmp_path / "stale.xml",
        article_set([record(502, title="An older revision of 502.", revised="20210101")]),
    )

    first = ingest(stack, baseline, "--batch-records", "2")
    assert (first.records, first.indexed) == (5, 5)

    second = ingest(stack, update)
    assert (second.records, second.indexed, second.deleted) == (2, 1, 1)
    assert second.dead_lettered == 0
    docs = sources(stack)
    assert sorted(docs) == ["501", "502", "504", "505"]
    assert docs["502"]["title"] == "Revised title of 502."
    assert docs["502"][revised_field] == "2024-06-01"

    third = ingest(stack, stale)
    assert (third.records, third.indexed, third.skipped_stale) == (1, 0, 1)
    assert third.dead_lettered == 0
    assert stack.dead_letters.counts() == {"malformed": 0, "rejected": 0, "exhausted": 0}
    assert sources(stack)["502"]["title"] == "Revised title of 502."
    version = stack.es.get(index=stack.settings.index, id="502")["_version"]
    assert version == 20240601


def test_a_later_version_of_a_citation_wins_and_the_delete_of_an_earlier_one_leaves_it(
    stack: Stack, workers: WorkerFactory, tmp_path: Path
) -> None:
    workers.start(concurrency=2)
    baseline = write_xml(
        tmp_path / "pubmed25n0001.xml",
        article_set([pubmed_article(p, revised="20200101") for p in (701, 702)]),
    )
    # Version 2 carries an older revision date than version 1 had: it wins all the same.
    second_versions = write_xml(
        tmp_path / "pubmed25n1300.xml",
        article_set(
            [
                pubmed_article(701, title="Version 2 of 701.", revised="20190101", version=2),
                pubmed_article(702, title="Version 2 of 702.", version=2),
            ]
        ),
    )
    late_first_version = write_xml(
        tmp_path / "late.xml",
        article_set([pubmed_article(701, title="A late fix of version 1.", revised="20250101")]),
    )
    first_version_deleted = write_xml(
        tmp_path / "pubmed25n1301.xml", article_set([], deletes=[701], delete_version=1)
    )
    second_version_deleted = write_xml(
        tmp_path / "pubmed25n1302.xml", article_set([], deletes=[701, 702], delete_version=2)
    )

    assert ingest(stack, baseline).indexed == 2
    assert ingest(stack, second_versions).indexed == 2
    docs = sources(stack)
    assert (docs["701"]["title"], docs["701"]["pmid_version"]) == ("Version 2 of 701.", 2)
    assert stack.es.get(index=stack.settings.index, id="701")["_version"] == 10**8 + 20190101

    late = ingest(stack, late_first_version)
    assert (late.records, late.indexed, late.skipped_stale) == (1, 0, 1)
    assert sources(stack)["701"]["title"] == "Version 2 of 701."

    # NLM deleting version 1 leaves version 2, which PubMed shows, in place.
    kept = ingest(stack, first_version_deleted)
    assert (kept.records, kept.deleted, kept.skipped_stale, kept.dead_lettered) == (1, 0, 1, 0)
    assert sources(stack)["701"]["title"] == "Version 2 of 701."

    gone = ingest(stack, second_version_deleted)
    assert (gone.records, gone.deleted, gone.dead_lettered) == (2, 2, 0)
    assert "701" not in sources(stack) and "702" not in sources(stack)
    assert stack.dead_letters.counts() == {"malformed": 0, "rejected": 0, "exhausted": 0}


def test_citations_real_files_have_without_a_title_or_with_formulas_are_indexed(
    stack: Stack, workers: WorkerFactory, tmp_path: Path
) -> None:
    # Shapes seen in NLM's pubmed21n1298.xml.gz: an erratum with an empty <ArticleTitle/>,
    # a German citation titled only in <VernacularTitle>; and a formula whose mml prefix the
    # file declares once, on its root, as NLM's DTD allows.
    title = "<ArticleTitle>Test citation {} on remyelination in multiple sclerosis.</ArticleTitle>"
    erratum = pubmed_article(611).replace(title.format(611), "<ArticleTitle/>")
    vernacular = pubmed_article(612).replace(
        title.format(612),
        "<ArticleTitle/><VernacularTitle>Briefsammlung Wittelshöfer.</VernacularTitle>",
    )
    formula = pubmed_article(613).replace(
        "the immune system.",
        "the immune system (<mml:math><mml:mi>V</mml:mi>\n  <mml:mn>2</mml:mn></mml:math>).",
    )
    text = article_set([erratum, vernacular, formula])
    text = text.replace(
        "<PubmedArticleSet>",
        '<PubmedArticleSet xmlns:mml="http://www.w3.org/1998/Math/MathML">',
    )
    path = write_xml(tmp_path / "real-shapes.xml", text)
    workers.start()

    summary = ingest(stack, path)

    assert (summary.records, summary.indexed, summary.dead_lettered) == (3, 3, 0)
    docs = sources(stack)
    assert "title" not in docs["611"]
    assert docs["612"]["title"] == docs["612"]["transliterated_title"]
    assert docs["613"]["abstract"].endswith("the immune system (V2).")
    found = run_cli("search", "immune system", "--size", "10", env=stack.env, check=True)
    assert "PMID 611 (2003) [No title available]" in found.stdout.decode()


def test_bad_xml_records_are_dead_lettered_with_their_offsets_and_the_rest_indexed(
    stack: Stack, workers: WorkerFactory, tmp_path: Path
) -> None:
    workers.start()
    invalid = pubmed_article("602x")  # a PMID that is not digits
    broken = pubmed_article(604).replace("</ArticleTitle>", "</Title>")
    path = write_xml(
        tmp_path / "mixed.xml",
        article_set([pubmed_article(601), invalid, broken, pubmed_article(603)]),
    )

    summary = ingest(stack, path)

    assert (summary.records, summary.indexed, summary.dead_lettered) == (4, 2, 2)
    assert set(sources(stack)) == {"601", "603"}
    entries = sorted(stack.dead_letters.iter_entries("malformed"), key=lambda e: e.pmid or "")
    assert [(e.format, e.pmid) for e in entries] == [("pubmed-xml", "602x"), ("pubmed-xml", "604")]
    assert "digits only" in entries[0].reason
    assert "not well-formed XML" in entries[1].reason
    data = path.read_bytes()
    for entry, pmid in zip(entries, ("602x", "604"), strict=True):
        (record,) = entry.records
        assert data[record.offset :].startswith(b"<PubmedArticle><MedlineCitation")
        assert record.text.encode() == data[record.offset : record.offset + len(record.text)]
        assert pmid.encode() in data[record.offset : record.offset + 200]
