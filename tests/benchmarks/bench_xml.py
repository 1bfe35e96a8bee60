"""PubMed XML against MEDLINE text: what a worker spends on the same citations in each format.

Run on demand::

    python tests/benchmarks/bench_xml.py [--records 30000] [--rounds 7]
    python tests/benchmarks/bench_xml.py --end-to-end [--records 60000] [--rounds 3]
    python tests/benchmarks/bench_xml.py --file pubmed21n1298.xml.gz [--file ...] [--end-to-end]

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

- ``--file PATH`` (NLM's files, plain or gzipped; repeatable): the citations of real files
  instead, each once (deletions left out), XML only, the compiled parser against the Python
  one. Before timing, every citation must give the same index body, or the same dead letter,
  with either parser: a differential check over real data as well as a benchmark.

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
from collections.abc import Iterable, Sequence
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from schemas.messages import BatchMessage, PackedBatch, RawRecord  # noqa: E402
from tests.benchmarks.bench_parse import use_parser  # noqa: E402
from tests.helpers import DATA  # noqa: E402
from worker.medline_text import iter_raw_records, open_source  # noqa: E402
from worker.pipeline import ParsedBatch, parse_batch  # noqa: E402
from worker.pubmed_xml import iter_xml_record_bytes, iter_xml_records  # noqa: E402

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
#: The variants for real files, which come in XML only.
FILE_VARIANTS = VARIANTS[:2]
#: Record elements of the real files that are citations (a deletion is not timed).
CITATION_STARTS = (b"<PubmedArticle", b"<MedlineCitation")


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


def file_citations(paths: Sequence[Path], limit: int | None) -> list[str]:
    """The citations of NLM's files, in order, each once, at most ``limit`` of them."""
    found: list[str] = []
    for path in paths:
        with open_source(path) as stream:
            for _, raw in iter_xml_record_bytes(stream):
                if raw.startswith(CITATION_STARTS):
                    found.append(raw.decode("utf-8", "replace"))
                    if limit is not None and len(found) == limit:
                        return found
    return found


def write_xml_file(path: Path, texts: Iterable[str]) -> Path:
    """A ``PubmedArticleSet`` of ``texts``, as NLM writes them."""
    with open(path, "w", encoding="utf-8") as out:
        out.write('<?xml version="1.0" encoding="utf-8"?>\n<PubmedArticleSet>\n')
        for text in texts:
            out.write(text + "\n")
        out.write("</PubmedArticleSet>\n")
    return path


def batches(fmt: str, count: int) -> list[PackedBatch]:
    """The records as stored batches of :data:`BATCH_RECORDS`, as a worker receives them."""
    return pack(fmt, list(renumbered(sample_records()[fmt], fmt, count)))


def pack(fmt: str, texts: list[str]) -> list[PackedBatch]:
    """``texts`` as stored batches of :data:`BATCH_RECORDS`."""
    count = len(texts)
    packed = []
    for start in range(0, count, BATCH_RECORDS):
        records = [RawRecord(offset=0, text=t) for t in texts[start : start + BATCH_RECORDS]]
        message = BatchMessage(
            job_id="bench", batch_id=f"bench:{start}", source="bench", format=fmt, records=records
        )
        packed.append(PackedBatch.from_message(message))
    return packed


def parse_cpu_us(packed: list[PackedBatch], mode: str, real: bool = False) -> float:
    """CPU microseconds per record of ``parse_batch`` over the batches. The generated corpus
    must not dead-letter anything; a real file may (it is counted, and checked the same for
    both parsers by :func:`same_outcomes`)."""
    use_parser(mode)
    started = time.process_time()
    count = 0
    for batch in packed:
        parsed = parse_batch(batch, MAX_RECORD_BYTES)
        if parsed.dead_letters and not real:
            raise RuntimeError(f"dead letters in the bench corpus: {parsed.dead_letters[0]}")
        count += len(parsed.documents) + len(parsed.dead_letters)
    return (time.process_time() - started) / count * 1e6


def outcome(parsed: ParsedBatch) -> list[tuple[str, object]]:
    """A batch's result, comparable across parsers: index bodies and dead letters' reasons."""
    return [("document", orjson.loads(d.body)) for d in parsed.documents] + [
        ("dead letter", (letter.pmid, letter.reason)) for letter in parsed.dead_letters
    ]


def same_outcomes(packed: list[PackedBatch]) -> tuple[int, int]:
    """Fail unless both parsers give the same bodies and dead letters for every citation;
    (documents, dead letters)."""
    found = {}
    for label, _, mode in FILE_VARIANTS:
        use_parser(mode)
        found[label] = [item for b in packed for item in outcome(parse_batch(b, MAX_RECORD_BYTES))]
    first, second = (found[label] for label, _, _ in FILE_VARIANTS)
    for mine, theirs in zip(first, second, strict=True):
        if mine != theirs:
            raise RuntimeError(f"the parsers differ:\n  {mine}\n  {theirs}")
    letters = sum(kind == "dead letter" for kind, _ in first)
    return len(first) - letters, letters


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
    time_rounds(VARIANTS, packed, rounds)


def time_rounds(
    variants: Sequence[tuple[str, str, str]],
    packed: dict[str, list[PackedBatch]],
    rounds: int,
    real: bool = False,
) -> None:
    """Time ``parse_batch`` over each format's batches with each variant, in interleaved
    rounds, and print the figures."""
    figures: dict[str, list[float]] = {label: [] for label, _, _ in variants}
    for round_no in range(1, rounds + 1):
        order = variants if round_no % 2 else tuple(reversed(variants))
        for label, fmt, mode in order:
            figures[label].append(parse_cpu_us(packed[fmt], mode, real))
        listed = ", ".join(f"{label} {figures[label][-1]:.1f}" for label, _, _ in variants)
        print(f"  round {round_no}: µs per record: {listed}", flush=True)
    print()
    summarise(figures, variants[0][0], "µs per record")


def compare_file_cpu(paths: Sequence[Path], records: int | None, rounds: int) -> None:
    texts = file_citations(paths, records)
    packed = pack("pubmed-xml", texts)
    documents, letters = same_outcomes(packed)
    size = sum(len(b.data) for b in packed) / len(texts)
    print(
        f"{len(texts)} citations of {', '.join(p.name for p in paths)}: {documents} documents, "
        f"{letters} dead letters, the same with either parser; stored bytes per record {size:.0f}"
    )
    time_rounds(FILE_VARIANTS, {"pubmed-xml": packed}, rounds, real=True)


def summarise(figures: dict[str, list[float]], base: str, unit: str) -> None:
    for label, values in figures.items():
        ratios = [mine / theirs for mine, theirs in zip(values, figures[base], strict=True)]
        print(
            f"{label:<30} median {statistics.median(values):7.1f} {unit}; "
            f"{statistics.median(ratios):.3f} of {base} (median of the rounds' ratios)"
        )


def compare_end_to_end(records: int | None, rounds: int, paths: Sequence[Path] = ()) -> None:
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
    if paths:  # real files come in XML only
        del variants["text"]
    rates: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(prefix="medline-bench-") as tmpdir:
        tmp = Path(tmpdir)
        if paths:
            texts = file_citations(paths, records)
            records = len(texts)
            corpora = {"pubmed-xml": write_xml_file(tmp / "citations.xml", texts)}
            print(f"{records} citations of {', '.join(p.name for p in paths)}", end=", ")
        else:
            records = records or 60_000
            corpora = {
                fmt: write_corpus(
                    tmp / f"corpus.{'xml' if fmt == 'pubmed-xml' else 'txt'}", fmt, records
                )
                for fmt in ("pubmed-xml", "medline")
            }
            print(f"{records} records", end=", ")
        print("2 worker processes", flush=True)
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
    summarise(rates, "xml-python", "rec/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=None, help="records a variant runs")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds")
    parser.add_argument(
        "--end-to-end", action="store_true", help="through enqueue and real workers (services up)"
    )
    parser.add_argument(
        "--file",
        type=Path,
        action="append",
        default=[],
        help="an NLM PubMed XML file (plain or .gz) whose citations to use instead; repeatable",
    )
    args = parser.parse_args()
    for path in args.file:
        if not path.is_file():
            parser.error(f"--file {path}: no such file")
    if args.end_to_end:
        compare_end_to_end(args.records, args.rounds or 3, args.file)
    elif args.file:
        compare_file_cpu(args.file, args.records, args.rounds or 7)
    else:
        compare_cpu(args.records or 30_000, args.rounds or 7)


if __name__ == "__main__":
    main()
