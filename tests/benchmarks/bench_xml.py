"""PubMed XML against MEDLINE text: what a worker spends on the same citations in each format.

Run on demand::

    python tests/benchmarks/bench_xml.py [--records 30000] [--rounds 7]
    python tests/benchmarks/bench_xml.py --end-to-end [--records 60000] [--rounds 3]

The PubMed baseline and daily updates are XML; MEDLINE text is what exports give. Both
corpora here are the three real baseline citations of ``tests/data`` (``pubmed-baseline-
sample.xml`` and their MEDLINE form, ``pubmed-baseline-sample.medline``), repeated under
distinct PMIDs, so that the two formats hold exactly the same documents (checked before
timing).

- Default: CPU time per record of ``parse_batch`` -- what a worker does to a stored batch
  before indexing it (unpack, parse, map, validate, JSON ready to index) -- for each format
  with the compiled parser and with the Python reference (``MEDLINE_PARSER=python``), in
  interleaved rounds, in this one process. No services needed.
- ``--end-to-end`` (``deploy/local/services up``): ``enqueue --wait`` of each corpus with two
  worker processes into a fresh index, as ``bench_pipeline.py``'s (c) does, for XML with the
  compiled parser, XML with the Python one, and text; records/s and worker CPU per record.

It prints figures; it never passes or fails. Three citations repeated index more cheaply than
varied ones would (the same terms again and again): compare the formats with each other, not
these rates with ``bench_pipeline.py``'s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from schemas.messages import BatchMessage, PackedBatch, RawRecord  # noqa: E402
from tests.benchmarks.bench_parse import use_parser  # noqa: E402
from tests.helpers import DATA  # noqa: E402
from worker.medline_text import iter_raw_records  # noqa: E402
from worker.pipeline import parse_batch  # noqa: E402
from worker.pubmed_xml import iter_xml_records  # noqa: E402

#: The citations both corpora repeat, in each format.
SAMPLE_XML = DATA / "pubmed-baseline-sample.xml"
SAMPLE_TEXT = DATA / "pubmed-baseline-sample.medline"
#: First PMID given to the repeated citations (above any real one, so nothing collides).
FIRST_PMID = 90_000_000
#: Records per batch in the CPU comparison (the worker's default batch size).
BATCH_RECORDS = 2_000
#: Largest record a batch takes (the worker's default is larger than any of these).
MAX_RECORD_BYTES = 1 << 20
#: (label, format, MEDLINE_PARSER) of each variant, the first the one the others are
#: compared with.
VARIANTS = (
    ("XML, Python parser", "pubmed-xml", "python"),
    ("XML, compiled parser", "pubmed-xml", "native"),
    ("MEDLINE text, compiled parser", "medline", "native"),
    ("MEDLINE text, Python parser", "medline", "python"),
)


def sample_records() -> dict[str, list[tuple[str, str]]]:
    """(PMID, text) of each sample citation, by format."""
    with open(SAMPLE_XML, "rb") as stream:
        xml = [r.text for r in iter_xml_records(stream)]
    with open(SAMPLE_TEXT, "rb") as stream:
        text = [r.text for r in iter_raw_records(stream)]
    pmids = [t.split("PMID- ", 1)[1].split(None, 1)[0] for t in text]
    return {
        "pubmed-xml": list(zip(pmids, xml, strict=True)),
        "medline": list(zip(pmids, text, strict=True)),
    }


def renumbered(records: list[tuple[str, str]], fmt: str, count: int) -> Iterable[str]:
    """``count`` records cycling through ``records``, each under a PMID of its own."""
    for n in range(count):
        pmid, text = records[n % len(records)]
        old, new = (
            (f">{pmid}</PMID>", f">{FIRST_PMID + n}</PMID>")
            if fmt == "pubmed-xml"
            else (f"PMID- {pmid}", f"PMID- {FIRST_PMID + n}")
        )
        yield text.replace(old, new, 1)


def write_corpus(path: Path, fmt: str, count: int) -> Path:
    """A file of ``count`` records in ``fmt``, as NLM writes them."""
    records = renumbered(sample_records()[fmt], fmt, count)
    with open(path, "w", encoding="utf-8") as out:
        if fmt == "pubmed-xml":
            out.write('<?xml version="1.0" encoding="utf-8"?>\n<PubmedArticleSet>\n')
            for record in records:
                out.write(record + "\n")
            out.write("</PubmedArticleSet>\n")
        else:
            for record in records:
                out.write(record.rstrip("\n") + "\n\n")
    return path


def batches(fmt: str, count: int) -> list[PackedBatch]:
    """The records as stored batches of :data:`BATCH_RECORDS`, as a worker receives them."""
    texts = list(renumbered(sample_records()[fmt], fmt, count))
    packed = []
    for start in range(0, count, BATCH_RECORDS):
        records = [RawRecord(offset=0, text=t) for t in texts[start : start + BATCH_RECORDS]]
        message = BatchMessage(
            job_id="bench", batch_id=f"bench:{start}", source="bench", format=fmt, records=records
        )
        packed.append(PackedBatch.from_message(message))
    return packed


def parse_cpu_us(packed: list[PackedBatch], mode: str) -> float:
    """CPU microseconds per record of ``parse_batch`` over the batches."""
    use_parser(mode)
    started = time.process_time()
    count = 0
    for batch in packed:
        parsed = parse_batch(batch, MAX_RECORD_BYTES)
        if parsed.dead_letters:
            raise RuntimeError(f"dead letters in the bench corpus: {parsed.dead_letters[0]}")
        count += len(parsed.documents)
    return (time.process_time() - started) / count * 1e6


def same_documents(count: int) -> None:
    """Fail unless both formats give the same index bodies, with either parser."""
    found = {}
    for label, fmt, mode in VARIANTS:
        use_parser(mode)
        parsed = [parse_batch(b, MAX_RECORD_BYTES) for b in batches(fmt, count)]
        found[label] = [orjson.loads(d.body) for p in parsed for d in p.documents]
    first = VARIANTS[0][0]
    for label, bodies in found.items():
        if len(bodies) != count or bodies != found[first]:
            raise RuntimeError(f"{label} gives other documents than {first}")


def compare_cpu(records: int, rounds: int) -> None:
    same_documents(30)
    packed = {fmt: batches(fmt, records) for fmt in ("pubmed-xml", "medline")}
    sizes = {fmt: sum(len(b.data) for b in p) / records for fmt, p in packed.items()}
    print(
        f"{records} records a variant; stored bytes per record: XML {sizes['pubmed-xml']:.0f}, "
        f"MEDLINE text {sizes['medline']:.0f}"
    )
    figures: dict[str, list[float]] = {label: [] for label, _, _ in VARIANTS}
    for round_no in range(1, rounds + 1):
        order = VARIANTS if round_no % 2 else tuple(reversed(VARIANTS))
        for label, fmt, mode in order:
            figures[label].append(parse_cpu_us(packed[fmt], mode))
        listed = ", ".join(f"{label} {figures[label][-1]:.1f}" for label, _, _ in VARIANTS)
        print(f"  round {round_no}: µs per record: {listed}", flush=True)
    print()
    base = VARIANTS[0][0]
    for label, _, _ in VARIANTS:
        ratios = [mine / theirs for mine, theirs in zip(figures[label], figures[base], strict=True)]
        print(
            f"{label:<30} median {statistics.median(figures[label]):7.1f} µs per record; "
            f"{statistics.median(ratios):.3f} of {base} (median of the rounds' ratios)"
        )


def compare_end_to_end(records: int, rounds: int) -> None:
    from tests.benchmarks.bench_pipeline import run_pipeline
    from worker.es_client import make_client
    from worker.settings import Settings

    settings = Settings()
    es = make_client(settings).options(request_timeout=120)
    es.cluster.health(wait_for_status="yellow", timeout="30s")
    variants = {
        "xml": ("pubmed-xml", "native"),
        "xml-python": ("pubmed-xml", "python"),
        "text": ("medline", "native"),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(prefix="medline-bench-") as tmpdir:
        tmp = Path(tmpdir)
        corpora = {
            fmt: write_corpus(
                tmp / f"corpus.{'xml' if fmt == 'pubmed-xml' else 'txt'}", fmt, records
            )
            for fmt in ("pubmed-xml", "medline")
        }
        print(f"{records} records, 2 worker processes", flush=True)
        for round_no in range(1, rounds + 1):
            order = list(variants) if round_no % 2 else list(reversed(variants))
            for name in order:
                fmt, mode = variants[name]
                run = run_pipeline(
                    settings,
                    es,
                    corpora[fmt],
                    records,
                    2,
                    settings.batch_records,
                    tmp,
                    MEDLINE_PARSER=mode,
                )
                rates[name].append(run.rate)
                print(
                    f"  round {round_no} {name:<10} {run.rate:7.0f} rec/s   CPU µs per record: "
                    f"workers {run.worker_cpu_per_record_ms * 1000:.0f}, producer "
                    f"{run.producer_cpu_per_record_ms * 1000:.0f}",
                    flush=True,
                )
    print()
    for name, values in rates.items():
        ratios = [mine / theirs for mine, theirs in zip(values, rates["xml-python"], strict=True)]
        print(
            f"{name:<10} median {statistics.median(values):7.0f} rec/s; "
            f"{statistics.median(ratios):.3f} of xml-python (median of the rounds' ratios)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=None, help="records a variant runs")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds")
    parser.add_argument(
        "--end-to-end", action="store_true", help="through enqueue and real workers (services up)"
    )
    args = parser.parse_args()
    if args.end_to_end:
        compare_end_to_end(args.records or 60_000, args.rounds or 3)
    else:
        compare_cpu(args.records or 30_000, args.rounds or 7)


if __name__ == "__main__":
    main()
