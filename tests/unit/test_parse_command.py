"""``medline-ingest parse``: the indexed bodies on stdout, the rejected records on stderr, with
no service running."""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.helpers import run_cli
from tests.records import MALFORMED, medline_record, write_records


def test_every_record_comes_out_in_order_across_batches(tmp_path: Path) -> None:
    records = [medline_record(n) for n in range(1, 6)]
    records.insert(2, MALFORMED["empty title"])
    source = write_records(tmp_path / "mixed.medline", records)

    # Batches of two records: the output runs across four of them.
    proc = run_cli("parse", str(source), env={"MEDLINE_BATCH_RECORDS": "2"}, check=True)

    bodies = [orjson.loads(line) for line in proc.stdout.splitlines()]
    assert [body["pmid"] for body in bodies] == ["1", "2", "3", "4", "5"]
    assert bodies[0]["mesh_major_topics"] == ["Multiple Sclerosis"]
    assert bodies[0]["mesh_qualified_terms"] == [
        "Multiple Sclerosis/pathology",
        "Multiple Sclerosis/therapy",
    ]
    (rejected,) = [orjson.loads(line) for line in proc.stderr.splitlines()]
    assert rejected["pmid"] == "99000001" and rejected["source"] == str(source)
    assert "title" in rejected["reason"].lower()


def test_a_file_that_cannot_be_read_is_one_line_and_exit_1(tmp_path: Path) -> None:
    proc = run_cli("parse", str(tmp_path / "missing.medline"), env={})

    assert proc.returncode == 1
    assert proc.stdout == b""
    (line,) = proc.stderr.decode().splitlines()
    assert "missing.medline" in line and "Traceback" not in line
