"""End to end through the real broker, real worker processes and the real Elasticsearch."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import lz4.frame
import pytest

from schemas.document import DERIVED_MESH_FIELDS, Document
from schemas.index_template import ENTRY_FIELDS, TEMPLATE_VERSION, build_index_template
from tests.helpers import DATA, REPO, run_cli, sample_documents, wait_for
from tests.integration.conftest import Stack, WorkerFactory
from tests.records import MALFORMED, medline_record, write_records
from worker.bulk_indexer import BulkAction, BulkLimits, bulk_write
from worker.index_admin import ensure_index, versioned_index_name

#: Seconds a whole job may take in these tests before they fail.
JOB_TIMEOUT = 300


def enqueue_and_wait(stack: Stack, *args: str, env: dict[str, str] | None = None) -> dict:
    proc = run_cli(
        "enqueue",
        *args,
        "--wait",
        "--timeout",
        str(JOB_TIMEOUT),
        env={**stack.env, **(env or {})},
        check=True,
    )
    return json.loads(proc.stdout)


def test_sample_file_is_indexed_and_every_pmid_found(stack: Stack, workers: WorkerFactory) -> None:
    workers.start(concurrency=2)
    sample = DATA / "sample.medline"
    pmids = re.findall(r"^PMID- (\d+)", sample.read_text(), flags=re.MULTILINE)
    assert len(pmids) >= 20

    summary = enqueue_and_wait(stack, str(sample))

    assert summary["records"] == len(pmids)
    assert summary["indexed"] == len(pmids)
    assert summary["dead_lettered"] == 0
    for pmid in pmids:
        doc = stack.es.get(index=stack.settings.index, id=pmid)
        assert doc["_source"]["pmid"] == pmid
    assert stack.count() == len(set(pmids))
    # Written through the alias into the versioned index from the template.
    aliases = stack.es.indices.get_alias(name=stack.settings.index)
    assert list(aliases) == [f"{stack.settings.index}-v1"] or all(
        name.startswith(f"{stack.settings.index}-v") for name in aliases
    )


def test_the_default_flat_mapping_indexes_the_documents_and_plain_queries_reach_entry_fields(
    stack: Stack, workers: WorkerFactory
) -> None:
    workers.start()
    sample = DATA / "sample.medline"
    pmids = set(re.findall(r"^PMID- (\d+)", sample.read_text(), flags=re.MULTILINE))

    summary = enqueue_and_wait(stack, str(sample))

    assert summary["indexed"] == len(pmids) and summary["dead_lettered"] == 0
    assert stack.count() == len(pmids)
    index = f"{stack.settings.index}-v{TEMPLATE_VERSION}-flat"
    assert list(stack.es.indices.get_alias(name=stack.settings.index)) == [index]
    mapping = stack.es.indices.get_mapping(index=index)[index]["mappings"]
    assert mapping["_meta"]["mapping"] == "flat"
    assert all("type" not in mapping["properties"][name] for name in ENTRY_FIELDS)
    # Without a nested wrapper, these queries find nothing in a nested index.
    for query in (
        {"term": {"mesh.descriptor": "Central Nervous System"}},
        {"match": {"authors.full_name": "Sorensen"}},
    ):
        hits = stack.es.search(index=stack.settings.index, query=query)["hits"]["hits"]
        assert hits and all(hit["_id"] in pmids for hit in hits), query


def _search_pmids(stack: Stack, query: dict) -> set[str]:
    response = stack.es.search(index=stack.settings.index, query=query, size=1000)
    return {hit["_id"] for hit in response["hits"]["hits"]}


def _sample_pmids_with(line: str) -> set[str]:
    """The PMIDs of the records of ``tests/data/sample.medline`` with a line that matches the
    regular expression ``line``: read from the text itself, not through the parser."""
    pmids = set()
    for record in re.split(r"\n\s*\n", (DATA / "sample.medline").read_text()):
        pmid = re.search(r"^PMID- *(\d+)", record, re.MULTILINE)
        if pmid and re.search(line, record, re.MULTILINE):
            pmids.add(pmid.group(1))
    return pmids


@pytest.mark.parametrize("mapping", ["nested", "flat"])
def test_pubmed_major_topic_and_subheading_searches_are_exact_in_either_mapping(
    stack: Stack, workers: WorkerFactory, mapping: str
) -> None:
    env = {"MEDLINE_INDEX_MAPPING": mapping}
    workers.start(**env)
    sample = DATA / "sample.medline"
    docs = sample_documents()
    enqueue_and_wait(stack, str(sample), env=env)
    stack.refresh()
    # "Humans" is a heading of many citations and a major topic of none, beside headings
    # that are: the case where the flat mapping's entry fields, queried on their own, mislead.
    humans = {d.pmid for d in docs if any(m["descriptor"] == "Humans" for m in d.mesh)}
    assert humans and not any(
        m["major"] for d in docs for m in d.mesh if m["descriptor"] == "Humans"
    )
    if mapping == "flat":
        loose = {"term": {"mesh.descriptor": "Humans"}}, {"term": {"mesh.major": True}}
        assert _search_pmids(stack, {"bool": {"filter": list(loose)}}) == humans

    assert _search_pmids(stack, {"term": {"mesh_major_topics": "Humans"}}) == set()
    topic, qualifier = "Multiple Sclerosis", "drug therapy"
    major = {d.pmid for d in docs for m in d.mesh if m["descriptor"] == topic and m["major"]}
    treated = {
        d.pmid
        for d in docs
        for m in d.mesh
        if m["descriptor"] == topic and qualifier in m.get("qualifiers", [])
    }
    assert major and treated
    assert _search_pmids(stack, {"term": {"mesh_major_topics": topic}}) == major
    if mapping == "nested":
        heading = {"term": {"mesh.descriptor": topic}}, {"term": {"mesh.major": True}}
        in_one_heading = {"nested": {"path": "mesh", "query": {"bool": {"filter": list(heading)}}}}
        assert _search_pmids(stack, in_one_heading) == major
        # Where the star is: on the pair itself, in some of the citations that have the pair.
        with_pair = _sample_pmids_with(rf"^MH  - \*?{topic}/(.*/)?\*?diagnostic imaging(/|$)")
        starred = _sample_pmids_with(rf"^MH  - \*?{topic}/(.*/)?\*diagnostic imaging(/|$)")
        assert starred and with_pair - starred
        pair = (
            {"term": {"mesh.descriptor": topic}},
            {"term": {"mesh.major_qualifiers": "diagnostic imaging"}},
        )
        in_one_heading = {"nested": {"path": "mesh", "query": {"bool": {"filter": list(pair)}}}}
        assert _search_pmids(stack, in_one_heading) == starred
    pair = {"term": {"mesh_qualified_terms": f"{topic}/{qualifier}"}}
    assert _search_pmids(stack, pair) == treated


def test_search_keeps_the_citations_of_a_major_topic(stack: Stack, workers: WorkerFactory) -> None:
    workers.start()
    enqueue_and_wait(stack, str(DATA / "sample.medline"))
    stack.refresh()
    words = re.compile(r"\b(multiple|sclerosis)\b", re.IGNORECASE)
    expected = {
        d.pmid
        for d in sample_documents()
        if "Multiple Sclerosis" in d.mesh_major_topics and words.search(f"{d.title} {d.abstract}")
    }
    assert expected

    args = ("search", "multiple sclerosis", "--major-topic", "Multiple Sclerosis", "--size", "100")
    hits = json.loads(run_cli(*args, "--json", env=stack.env, check=True).stdout)
    assert {hit["pmid"] for hit in hits} == expected
    assert all("Multiple Sclerosis" in hit["mesh_major_topics"] for hit in hits)
    summary = run_cli(*args, env=stack.env, check=True).stdout.decode().splitlines()[0]
    assert summary == (
        f"{len(expected)} documents match 'multiple sclerosis' among major topic "
        "'Multiple Sclerosis'"
    )


#: Fields of a heading added after indices were made without them: where its star was.
STAR_FIELDS = ("descriptor_major", "major_qualifiers")


@pytest.mark.parametrize("mapping", ["nested", "flat"])
def test_an_index_made_before_a_field_was_added_gets_it_and_takes_the_new_documents(
    stack: Stack, workers: WorkerFactory, mapping: str
) -> None:
    # As an upgrade finds it: an index without the MeSH terms, and whose headings lack the
    # fields that say where the star was.
    alias = stack.settings.index
    older = build_index_template(alias, mapping=mapping)["template"]["mappings"]
    for name in DERIVED_MESH_FIELDS:
        del older["properties"][name]
    for name in STAR_FIELDS:
        del older["properties"]["mesh"]["properties"][name]
    index = versioned_index_name(alias, mapping=mapping)
    stack.es.indices.create(index=index, mappings=older, aliases={alias: {"is_write_index": True}})
    env = {"MEDLINE_INDEX_MAPPING": mapping}
    workers.start(**env)
    sample = DATA / "sample.medline"

    summary = enqueue_and_wait(stack, str(sample), env=env)

    # A strict index without the fields would have refused every citation with headings.
    assert summary["dead_lettered"] == 0 and summary["indexed"] == summary["records"]
    properties = stack.es.indices.get_mapping(index=index)[index]["mappings"]["properties"]
    assert properties["mesh_major_topics"] == {"type": "keyword", "ignore_above": 1024}
    wanted_mesh = build_index_template(alias, mapping=mapping)["template"]["mappings"]
    assert properties["mesh"] == wanted_mesh["properties"]["mesh"]
    stack.refresh()
    assert _search_pmids(stack, {"term": {"mesh_major_topics": "Multiple Sclerosis"}})
    starred = {d.pmid for d in sample_documents() for m in d.mesh if m.get("major_qualifiers")}
    query = {"exists": {"field": "mesh.major_qualifiers"}}
    if mapping == "nested":
        query = {"nested": {"path": "mesh", "query": query}}
    assert starred and _search_pmids(stack, query) == starred


def test_a_process_set_to_another_mapping_writes_to_the_existing_index_and_warns(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    nested_settings = stack.settings.model_copy(update={"index_mapping": "nested"})
    nested_index = ensure_index(stack.es, nested_settings)

    with caplog.at_level(logging.WARNING, logger="worker.index_admin"):
        index = ensure_index(stack.es, stack.settings)  # flat, the default

    assert index == nested_index == f"{stack.settings.index}-v{TEMPLATE_VERSION}"
    assert list(stack.es.indices.get_alias(name=stack.settings.index)) == [nested_index]
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "made with the nested mapping, but MEDLINE_INDEX_MAPPING is flat" in warning

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="worker.index_admin"):
        ensure_index(stack.es, nested_settings)
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def _template_in_place(stack: Stack) -> dict:
    found = stack.es.indices.get_index_template(name=stack.settings.index)["index_templates"]
    return found[0]["index_template"]


def test_a_process_of_an_older_version_leaves_a_newer_template_as_it_is(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    # As a rolling upgrade has it: a newer version's template, with a field this one lacks.
    alias = stack.settings.index
    newer = build_index_template(alias)
    newer["template"]["mappings"]["properties"]["from_a_newer_version"] = {"type": "keyword"}
    stack.es.indices.put_index_template(name=alias, **newer)

    with caplog.at_level(logging.WARNING, logger="worker.index_admin"):
        index = ensure_index(stack.es, stack.settings)

    assert "from_a_newer_version" in _template_in_place(stack)["template"]["mappings"]["properties"]
    made = stack.es.indices.get_mapping(index=index)[index]["mappings"]["properties"]
    assert "from_a_newer_version" in made  # the index made now keeps the newer field
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "left as it is" in warning and "from_a_newer_version" in warning

    # A higher template version is newer whatever its fields.
    higher = build_index_template(alias)
    higher["version"] = TEMPLATE_VERSION + 1
    del higher["template"]["mappings"]["properties"]["book_revised"]
    stack.es.indices.put_index_template(name=alias, **higher)
    ensure_index(stack.es, stack.settings)
    assert _template_in_place(stack)["version"] == TEMPLATE_VERSION + 1


def test_an_older_versions_template_is_replaced(stack: Stack) -> None:
    alias = stack.settings.index
    older = build_index_template(alias)
    properties = older["template"]["mappings"]["properties"]
    del properties["book_revised"]
    for name in STAR_FIELDS:
        del properties["mesh"]["properties"][name]
    stack.es.indices.put_index_template(name=alias, **older)

    ensure_index(stack.es, stack.settings)

    in_place = _template_in_place(stack)["template"]["mappings"]["properties"]
    assert in_place["book_revised"] == {"type": "date", "format": "strict_date_optional_time"}
    assert set(STAR_FIELDS) <= set(in_place["mesh"]["properties"])


def test_mixed_file_accounts_for_every_record(
    stack: Stack, workers: WorkerFactory, tmp_path: Path
) -> None:
    valid = [medline_record(1000 + i) for i in range(40)]
    records = [*valid[:10], MALFORMED["empty title"], *valid[10:30]]
    records += [MALFORMED["pmid not digits"], *valid[30:]]
    path = write_records(tmp_path / "mixed.txt", records)
    workers.start()

    summary = enqueue_and_wait(stack, str(path), "--batch-records", "7")

    assert summary["records"] == 42
    assert summary["indexed"] == 40
    assert summary["dead_lettered"] == 2
    assert summary["indexed"] + summary["dead_lettered"] == summary["records"]
    assert stack.count() == 40
    entries = list(stack.dead_letters.iter_entries("malformed"))
    assert len(entries) == 2
    raw = path.read_bytes()
    for entry in entries:
        (record,) = entry.records
        assert record.text.strip() in MALFORMED.values()
        # The byte offset points at the record in its file.
        assert raw[record.offset :].startswith(record.text.strip().encode())
        assert entry.source == str(path)
        assert entry.job_id == summary["job_id"]
        assert entry.batch_id.startswith(summary["job_id"])
        assert entry.reason
    empty_title = next(e for e in entries if "99000001" in e.records[0].text)
    assert empty_title.pmid == "99000001"
    assert any("title" in error.field for error in empty_title.errors)


def test_same_pmid_in_two_batches_is_one_document(
    stack: Stack, workers: WorkerFactory, tmp_path: Path
) -> None:
    records = [medline_record(5000, title=f"Version {i} of the same citation.") for i in range(3)]
    records += [medline_record(5001)]
    path = write_records(tmp_path / "dupes.txt", records)
    workers.start()

    summary = enqueue_and_wait(stack, str(path), "--batch-records", "1")

    assert summary["records"] == 4
    assert summary["indexed"] + summary["dead_lettered"] == 4
    assert stack.pmids() == ["5000", "5001"]


def test_record_over_the_size_limit_is_dead_lettered_and_its_batch_indexed(
    stack: Stack, workers: WorkerFactory, tmp_path: Path
) -> None:
    big_title = "Large " + "x" * 20_000 + "."
    records = [medline_record(7000 + i) for i in range(4)] + [medline_record(7100, big_title)]
    path = write_records(tmp_path / "big.txt", records)
    workers.start(MEDLINE_MAX_RECORD_BYTES="8192")

    summary = enqueue_and_wait(stack, str(path))

    assert summary["indexed"] == 4
    assert summary["dead_lettered"] == 1
    (entry,) = stack.dead_letters.iter_entries("malformed")
    assert "too large" in entry.reason
    assert "7100" in entry.records[0].text
    assert stack.pmids() == ["7000", "7001", "7002", "7003"]


def test_replay_after_the_cause_is_fixed_indexes_and_empties_the_queue(
    stack: Stack, workers: WorkerFactory, tmp_path: Path
) -> None:
    records = [medline_record(8000 + i, "Long " + "y" * 9000 + ".") for i in range(3)]
    records += [medline_record(8100)]
    path = write_records(tmp_path / "replay.txt", records)
    strict = workers.start(MEDLINE_MAX_RECORD_BYTES="4096")
    summary = enqueue_and_wait(stack, str(path))
    assert summary["dead_lettered"] == 3
    assert stack.dead_letters.counts()["malformed"] == 3

    # The fix: a worker with a larger limit.
    strict.terminate()
    workers.start(MEDLINE_MAX_RECORD_BYTES="1048576")
    proc = run_cli("dlq", "replay", "--queue", "malformed", "--wait", env=stack.env, check=True)
    replayed = json.loads(proc.stdout)

    assert replayed["records"] == 3
    assert replayed["indexed"] == 3
    assert stack.dead_letters.counts()["malformed"] == 0
    assert stack.pmids() == ["8000", "8001", "8002", "8100"]


def test_bad_paths_are_one_line_errors_and_enqueue_nothing(stack: Stack, tmp_path: Path) -> None:
    missing = run_cli("enqueue", str(tmp_path / "nope.txt"), env=stack.env)
    assert missing.returncode == 2
    assert missing.stderr.decode().strip().count("\n") == 0
    assert "no such file" in missing.stderr.decode()
    assert "Traceback" not in missing.stderr.decode()

    junk = tmp_path / "junk.txt"
    junk.write_text("this is not MEDLINE\nat all\n")
    proc = run_cli("enqueue", str(junk), env=stack.env)
    assert proc.returncode == 2
    assert "holds no MEDLINE" in proc.stderr.decode()
    assert stack.queue_depth() == 0

    # A file whose published MD5 does not match (a download cut short) is refused whole.
    cut = tmp_path / "pubmed25n0001.txt"
    cut.write_bytes((DATA / "sample.medline").read_bytes())
    (tmp_path / "pubmed25n0001.txt.md5").write_text(f"MD5(pubmed25n0001.txt)= {'0' * 32}\n")
    refused = run_cli("enqueue", str(cut), env=stack.env)
    assert refused.returncode == 1
    message = refused.stderr.decode().strip()
    assert "pubmed25n0001.txt is not enqueued: its MD5 is" in message and "0" * 32 in message
    assert message.count("\n") == 0 and "Traceback" not in message
    assert stack.queue_depth() == 0
    assert all(str(cut) not in job.sources for job in stack.jobs.recent())


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def test_worker_killed_mid_batch_loses_and_duplicates_nothing(
    stack: Stack, workers: WorkerFactory, tmp_path: Path
) -> None:
    total = 3000
    path = write_records(tmp_path / "many.txt", (medline_record(200_000 + i) for i in range(total)))
    first = workers.start(concurrency=2)
    proc = run_cli("enqueue", str(path), "--batch-records", "100", env=stack.env, check=True)
    job_id = proc.stdout.decode().strip()

    # Kill while batches are in flight (taken, not acknowledged) and some are already done.
    wait_for(
        lambda: stack.job(job_id).indexed >= 300 and stack.redis.hlen("unacked") > 0,
        timeout=JOB_TIMEOUT,
        interval=0.05,
        what="a job half done with batches in flight",
    )
    first.kill()
    assert stack.job(job_id).state != "completed"

    workers.start(concurrency=2)
    done = stack.wait_completed(
        job_id, timeout=JOB_TIMEOUT, what="the job to complete after the restart"
    )
    assert done.records == total
    assert done.indexed == total
    assert done.dead_lettered == 0
    assert stack.count() == total


def test_batch_that_keeps_killing_its_worker_goes_to_exhausted(
    stack: Stack, workers: WorkerFactory, tmp_path: Path
) -> None:
    path = write_records(
        tmp_path / "poison.txt", (medline_record(300_000 + i) for i in range(3000))
    )
    worker = workers.start(concurrency=1, MEDLINE_MAX_DELIVERIES="2")
    proc = run_cli("enqueue", str(path), "--batch-records", "5000", env=stack.env, check=True)
    job_id = proc.stdout.decode().strip()
    deliveries_key = stack.settings.key("job", job_id, "deliveries")

    def deliveries() -> int:
        return sum(int(v) for v in stack.redis.hvals(deliveries_key))

    # Play the poison: kill the pool process each time it takes the batch.
    for n in (1, 2):
        wait_for(
            lambda n=n: deliveries() >= n, timeout=JOB_TIMEOUT, interval=0.02, what=f"delivery {n}"
        )
        for child in _children(worker.proc.pid):
            os.kill(child, signal.SIGKILL)

    done = stack.wait_completed(job_id, timeout=JOB_TIMEOUT, what="the poison batch to be given up")
    assert done.dead_lettered_by_queue["exhausted"] == 3000
    (entry,) = stack.dead_letters.iter_entries("exhausted")
    assert "delivered 2 times" in entry.reason
    assert len(entry.records) == 3000
    assert worker.proc.poll() is None  # the worker itself survived


@pytest.mark.parametrize("queue", ["malformed"])
def test_dlq_commands_show_export_and_purge(
    stack: Stack, workers: WorkerFactory, tmp_path: Path, queue: str
) -> None:
    path = write_records(tmp_path / "bad.txt", [MALFORMED["empty title"], medline_record(9000)])
    workers.start()
    enqueue_and_wait(stack, str(path))

    listing = json.loads(run_cli("dlq", "list", "--json", env=stack.env, check=True).stdout)
    assert listing["counts"][queue] == 1
    entry_id = listing["entries"][queue][0]["id"]
    shown = json.loads(run_cli("dlq", "show", entry_id, "--json", env=stack.env, check=True).stdout)
    assert shown["records"][0]["text"].startswith("PMID- 99000001")

    out = tmp_path / "dlq.ndjson"
    run_cli("dlq", "export", "--output", str(out), env=stack.env, check=True)
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [entry_id]

    refused = run_cli("dlq", "purge", queue, env=stack.env)
    assert refused.returncode == 2
    assert stack.dead_letters.counts()[queue] == 1
    run_cli("dlq", "purge", queue, "--yes", env=stack.env, check=True)
    assert stack.dead_letters.counts()[queue] == 0


def test_document_elasticsearch_refuses_goes_to_rejected_with_its_error(
    stack: Stack, workers: WorkerFactory, tmp_path: Path
) -> None:
    # Over a thousand distinct unmapped tags: each becomes a field under extra.*, past the
    # index's limit on mapped fields, so Elasticsearch refuses the document (400) itself.
    tags = [f"X{chr(65 + i // 26 % 26)}{chr(65 + i % 26)}" for i in range(676)]
    tags += [f"Y{chr(65 + i // 26 % 26)}{chr(65 + i % 26)}" for i in range(676)]
    refused = medline_record(9500) + "\n" + "\n".join(f"{tag:<4}- value" for tag in tags)
    path = write_records(tmp_path / "refused.txt", [medline_record(9501), refused])
    workers.start()

    summary = enqueue_and_wait(stack, str(path))

    assert summary["records"] == 2
    assert summary["indexed"] == 1
    assert summary["dead_lettered"] == 1
    (entry,) = stack.dead_letters.iter_entries("rejected")
    assert entry.pmid == "9500"
    assert entry.es_error is not None
    assert entry.es_error["status"] == 400
    assert "Limit of total fields" in entry.reason
    assert entry.document is not None
    assert entry.document["pmid"] == "9500"
    assert entry.records[0].text.startswith("PMID- 9500")
    assert stack.pmids() == ["9501"]


def test_a_key_a_part_does_not_declare_passes_pydantic_but_the_index_refuses_it(
    stack: Stack,
) -> None:
    # Parts ignore undeclared keys to validate faster (schemas.document.PART_CONFIG); the
    # index's strict mapping is what refuses one, should a parser ever write it.
    ensure_index(stack.es, stack.settings)
    bodies = {
        "1": b'{"pmid":"1","title":"T","authors":[{"full_name":"A","colour":"red"}]}',
        "2": b'{"pmid":"2","title":"T","journal":{"title":"J","colour":"red"}}',
        "3": b'{"pmid":"3","title":"T","mesh":[{"descriptor":"Humans","major":false}]}',
    }
    actions = []
    for pmid, body in bodies.items():
        document = Document.from_json(body)
        actions.append(BulkAction("index", pmid, document.index_json()))

    result = bulk_write(stack.es, stack.settings.index, actions, BulkLimits())

    assert [a.doc_id for a in result.written] == ["3"]
    assert sorted(a.doc_id for a, _, _ in result.rejected) == ["1", "2"]
    for _, status, error in result.rejected:
        assert status == 400
        assert error["type"] == "strict_dynamic_mapping_exception"
        assert "colour" in error["reason"]


def test_workers_hold_off_at_the_dead_letter_high_water_mark_until_purged(
    stack: Stack, workers: WorkerFactory, tmp_path: Path
) -> None:
    bad = [f"PMID- {99_100_000 + i}\nTI  -    " for i in range(3)]  # an empty title: malformed
    records = [*bad, *(medline_record(9600 + i) for i in range(5))]
    path = write_records(tmp_path / "hw.txt", records)
    worker = workers.start(MEDLINE_DEAD_LETTER_HIGH_WATER="2")
    job_id = (
        run_cli("enqueue", str(path), "--batch-records", "1", env=stack.env, check=True)
        .stdout.decode()
        .strip()
    )

    reason = wait_for(
        stack.dead_letters.paused_reason, timeout=JOB_TIMEOUT, what="workers to pause"
    )
    assert "high-water mark 2" in reason
    wait_for(lambda: "not taking new batches" in worker.log(), what="the pause in the log")
    paused = stack.job(job_id)
    assert paused.state != "completed"
    assert paused.dead_lettered == 2  # nothing was dropped to stay under the mark
    assert stack.dead_letters.counts()["malformed"] == 2

    run_cli("dlq", "purge", "malformed", "--yes", env=stack.env, check=True)
    done = stack.wait_completed(
        job_id, timeout=JOB_TIMEOUT, what="the job to finish after the purge"
    )
    assert done.indexed == 5
    assert done.dead_lettered == 3
    assert done.indexed + done.dead_lettered == done.records == 8


def test_sigterm_lets_the_batch_in_hand_finish(
    stack: Stack, workers: WorkerFactory, tmp_path: Path
) -> None:
    path = write_records(tmp_path / "warm.txt", (medline_record(700_000 + i) for i in range(4000)))
    worker = workers.start(concurrency=1)
    job_id = (
        run_cli("enqueue", str(path), "--batch-records", "4000", env=stack.env, check=True)
        .stdout.decode()
        .strip()
    )
    deliveries_key = stack.settings.key("job", job_id, "deliveries")
    wait_for(
        lambda: stack.redis.hlen(deliveries_key) > 0,
        timeout=JOB_TIMEOUT,
        interval=0.02,
        what="the batch to be taken",
    )
    assert stack.job(job_id).state != "completed"

    assert worker.terminate() == 0
    # The one batch was finished and committed before the worker exited: nothing redelivered.
    done = stack.job(job_id)
    assert done.state == "completed"
    assert done.indexed == 4000
    assert "Warm shutdown" in worker.log() or "warm shutdown" in worker.log().lower()


def test_enqueue_holds_redis_to_the_queued_batch_limit_until_workers_take_them(
    stack: Stack, workers: WorkerFactory, tmp_path: Path
) -> None:
    path = write_records(tmp_path / "big.txt", [medline_record(700_000 + i) for i in range(40)])
    producer = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "enqueue", str(path), "--batch-records", "5"],
        env={**os.environ, **stack.env, "MEDLINE_MAX_QUEUED_BATCHES": "2"},
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # No worker yet: the producer stores two of its eight batches, then waits, and says so.
        wait_for(
            lambda: stack.jobs.queued_batches() == 2 and stack.queue_depth() == 2,
            timeout=60,
            what="two batches queued",
        )
        assert producer.poll() is None, "the producer did not wait"
        assert stack.jobs.queued_batches() == 2
        workers.start()
        out, err = producer.communicate(timeout=JOB_TIMEOUT)
    finally:
        if producer.poll() is None:
            producer.kill()
    assert producer.returncode == 0, err.decode()
    assert b"MEDLINE_MAX_QUEUED_BATCHES=2" in err
    done = stack.wait_completed(out.decode().strip(), timeout=JOB_TIMEOUT, what="the job")
    assert (done.records, done.batches, done.indexed) == (40, 8, 40)
    assert stack.count() == 40


def test_batches_stored_compressed_and_as_is_are_both_indexed_by_the_same_worker(
    stack: Stack, workers: WorkerFactory, tmp_path: Path
) -> None:
    """No worker runs while the two jobs are enqueued, so their batches can be read in Redis:
    one job's as LZ4 frames, the other's as text; then one worker indexes both."""
    sample = DATA / "sample.medline"
    pmids = set(re.findall(r"^PMID- (\d+)", sample.read_text(), flags=re.MULTILINE))
    stored: dict[str, list[bytes]] = {}
    for compression in ("lz4", "none"):
        proc = run_cli(
            "enqueue",
            str(sample),
            env={**stack.env, "MEDLINE_BATCH_COMPRESSION": compression},
            check=True,
        )
        job_id = proc.stdout.decode().strip()
        stored[job_id] = list(stack.redis.hgetall(stack.jobs.pending_key(job_id)).values())
        assert stored[job_id], f"{compression}: no pending batch of job {job_id}"
        for value in stored[job_id]:
            head, body = value.split(b"\n", 1)
            assert json.loads(head).get("compression") == (None if compression == "none" else "lz4")
            text = body if compression == "none" else lz4.frame.decompress(body)
            assert text.startswith(b"PMID- ") and len(text) == sum(json.loads(head)["sizes"])
    compressed, plain = (sum(map(len, values)) for values in stored.values())
    assert compressed < 0.6 * plain

    workers.start()
    for job_id in stored:
        done = stack.wait_completed(job_id, timeout=JOB_TIMEOUT, what=f"job {job_id}")
        assert (done.indexed, done.dead_lettered) == (len(pmids), 0)
    assert stack.count() == len(pmids)
    assert not any(stack.redis.hlen(stack.jobs.pending_key(job_id)) for job_id in stored)


def test_a_threads_pool_worker_indexes_every_batch(
    stack: Stack, workers: WorkerFactory, tmp_path: Path
) -> None:
    """``MEDLINE_WORKER_POOL=threads`` against the real services: the pool's acknowledgements go
    through the event-loop wake-up of worker/thread_pool_wakeup.py (its speed is measured by
    ``bench_settings.py``, not here)."""
    records = [medline_record(7000 + i) for i in range(12)]
    path = write_records(tmp_path / "threads.txt", records)
    worker = workers.start(concurrency=2, MEDLINE_WORKER_POOL="threads")

    summary = enqueue_and_wait(stack, str(path), "--batch-records", "2")

    assert "concurrency: 2 (thread)" in worker.log()
    assert (summary["records"], summary["indexed"], summary["dead_lettered"]) == (12, 12, 0)
    assert stack.pmids() == sorted(str(7000 + i) for i in range(12))
    worker.assert_alive()
