"""Parser throughput per core: this project's parse + validate + JSON versus Biopython's parse.

Run on demand (no services needed)::

    python tests/benchmarks/bench_parse.py [--records 100000]

Both run in this one process, on the same generated file, with the garbage-collector settings
the worker uses (worker.tasks.GC_THRESHOLD), one after the other. CPU time (process_time) per
record is the figure, so it is per core and not disturbed by other load on the machine.
Biopython's ``Bio.Medline.parse`` only splits records into tag → values; this project also
maps every field, validates the document with pydantic and serialises it to the JSON body.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.benchmarks.corpus import write_corpus  # noqa: E402
from worker.documents import record_to_document  # noqa: E402
from worker.medline_text import iter_raw_records, open_source  # noqa: E402
from worker.tasks import GC_THRESHOLD  # noqa: E402


def ours(path: Path) -> tuple[int, float, int]:
    """(records, CPU seconds, JSON bytes) for split + parse + validate + serialise."""
    started = time.process_time()
    count = size = 0
    with open_source(path) as stream:
        for raw in iter_raw_records(stream):
            size += len(record_to_document(raw.text).index_json())
            count += 1
    return count, time.process_time() - started, size


def biopython(path: Path) -> tuple[int, float]:
    """(records, CPU seconds) for Bio.Medline.parse, raw parse only."""
    from Bio import Medline

    started = time.process_time()
    count = 0
    with open(path, encoding="utf-8") as handle:
        for _record in Medline.parse(handle):
            count += 1
    return count, time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2, help="best of this many runs each")
    args = parser.parse_args()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    with tempfile.TemporaryDirectory(prefix="medline-bench-parse-") as tmp:
        path = write_corpus(Path(tmp) / "corpus.txt", args.records)
        size_mb = path.stat().st_size / 1024 / 1024
        print(f"corpus: {args.records} generated records, {size_mb:.0f} MB")
        best_ours = min((ours(path) for _ in range(args.rounds)), key=lambda r: r[1])
        best_bio = min((biopython(path) for _ in range(args.rounds)), key=lambda r: r[1])
    n_ours, cpu_ours, json_bytes = best_ours
    n_bio, cpu_bio = best_bio
    assert n_ours == n_bio == args.records, (n_ours, n_bio)
    per_ours = cpu_ours / n_ours * 1e6
    per_bio = cpu_bio / n_bio * 1e6
    print(f"{'':<52}{'records/s':>10}  {'CPU us/record':>14}")
    print(
        f"{'medline-ingest: parse + validate + JSON':<52}{n_ours / cpu_ours:>10.0f}  "
        f"{per_ours:>14.1f}"
    )
    print(
        f"{'Biopython Bio.Medline.parse (raw parse only)':<52}{n_bio / cpu_bio:>10.0f}  "
        f"{per_bio:>14.1f}"
    )
    print(f"ratio (Biopython CPU / ours CPU): {per_bio / per_ours:.2f}  (target >= 1, aim 2)")
    print(f"JSON produced: {json_bytes / n_ours:.0f} bytes per document")


if __name__ == "__main__":
    main()
