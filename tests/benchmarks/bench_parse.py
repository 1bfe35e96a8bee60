"""Parser throughput per core: this project's parse + validate + JSON versus Biopython's parse.

Run on demand (no services needed)::

    python tests/benchmarks/bench_parse.py [--records 100000] [--rounds 3] [--profile]

All run in this one process, on the same generated file (tests/benchmarks/corpus.py), with
the garbage-collector settings the worker uses (worker.tasks.GC_THRESHOLD), in alternating
rounds; the best round of each counts. CPU time (``time.process_time``) per record is the
figure, so it is per core and little disturbed by other load on the machine.

- Ours: split the file into raw records, parse each into fields, map them onto the index
  body, validate it into a Document (pydantic), and have its JSON ready to index -- what the
  producer and a worker do with a record, minus the network. Twice: with the compiled parser
  (worker/native, the default when it is built) and with the pure-Python reference
  (MEDLINE_PARSER=python). The tables the Python parser remembers values in are emptied
  before each round, so no round profits from an earlier one.
- Biopython: ``Bio.Medline.parse`` only splits records into tag -> values.

After the comparison it prints where our time goes, stage by stage, how often the
remembered values recur in the corpus (recurrence is what the Python parser's tables save),
and what the Document model's choice of no pydantic string cache saves against pydantic's
default, in interleaved rounds.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


from schemas.document import Document  # noqa: E402
from tests.benchmarks.corpus import write_corpus  # noqa: E402
from worker import native  # noqa: E402
from worker.documents import (  # noqa: E402
    _fields_to_body,
    compiled_parser,
    forget_remembered,
    record_to_document,
)
from worker.medline_text import iter_raw_records, open_source, parse_fields  # noqa: E402
from worker.settings import get_settings  # noqa: E402
from worker.tasks import GC_THRESHOLD  # noqa: E402

#: Records the stage-by-stage breakdown and the profile look at (enough for stable figures).
SAMPLE_RECORDS = 20_000
#: Interleaved rounds of the string-cache comparison; the median of each counts.
CACHE_ROUNDS = 21
#: Citations the string-cache comparison validates per round.
CACHE_RECORDS = 3_000
#: How each MEDLINE_PARSER mode is named in the output.
LABELS = {"native": "compiled parser", "python": "Python parser"}
#: Tags whose values are remembered across records, as the builder does.
REMEMBERED_TAGS = ("MH", "RN", "NM", "PHST", "IS", "DP", "GR")


def use_parser(mode: str) -> None:
    """Switch the parser as ``MEDLINE_PARSER=mode`` would."""
    os.environ["MEDLINE_PARSER"] = mode
    get_settings.cache_clear()
    native.enabled.cache_clear()
    compiled_parser.cache_clear()


def ours(path: Path, mode: str) -> tuple[int, float, int]:
    """(records, CPU seconds, JSON bytes) for split + parse + validate + serialise."""
    use_parser(mode)
    forget_remembered()
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


def _per_record(step: Callable[[Any], Any], inputs: list[Any]) -> float:
    """CPU microseconds per input of ``step``."""
    started = time.process_time()
    for item in inputs:
        step(item)
    return (time.process_time() - started) / len(inputs) * 1e6


def stages(path: Path, limit: int, mode: str) -> list[tuple[str, float]]:
    """CPU microseconds per record of each stage, on the first ``limit`` records."""
    use_parser(mode)
    data = b""
    with open_source(path) as stream:
        while len(data) < limit * 4000 and (chunk := stream.read(1 << 20)):
            data += chunk
    started = time.process_time()
    raws = [r.text for r in iter_raw_records(io.BytesIO(data))][:limit]
    split = (time.process_time() - started) / len(raws) * 1e6
    parser = compiled_parser()
    if parser is not None:
        bodies = [parser.body_json(text) for text in raws]
        return [
            ("split into records", split),
            ("parse and map to JSON", _per_record(parser.body_json, raws)),
            ("validate JSON (pydantic)", _per_record(Document.from_json, bodies)),
            ("serialise", 0.0),  # the validated JSON is what is indexed
        ]
    fields = [parse_fields(text) for text in raws]
    forget_remembered()
    bodies = [_fields_to_body(f) for f in fields]
    documents = [Document.from_body(body) for body in bodies]
    forget_remembered()
    return [
        ("split into records", split),
        ("parse into fields", _per_record(parse_fields, raws)),
        ("map onto the body", _per_record(_fields_to_body, fields)),
        ("validate (pydantic)", _per_record(Document.from_body, bodies)),
        ("serialise (orjson)", _per_record(lambda d: d.index_json(), documents)),
    ]


def string_cache(path: Path) -> Iterable[str]:
    """Median CPU microseconds to validate a citation's JSON, as the worker does (the result
    dropped at once), with the model's configuration and with pydantic's default string
    cache, in alternating rounds."""
    from pydantic import ConfigDict

    class Cached(Document):
        model_config = ConfigDict(**{**Document.model_config, "cache_strings": True})

    use_parser("native" if native.BUILT else "python")
    with open_source(path) as stream:
        records = zip(range(CACHE_RECORDS), iter_raw_records(stream), strict=False)
        bodies = [record_to_document(r.text).index_json() for _, r in records]
    validators = {
        "no string cache (the model's)": Document.__pydantic_validator__.validate_json,
        "pydantic's default string cache": Cached.__pydantic_validator__.validate_json,
    }
    times: dict[str, list[float]] = {label: [] for label in validators}
    for _ in range(CACHE_ROUNDS):
        for label, validate in validators.items():
            times[label].append(_per_record(validate, bodies))
    for label, values in times.items():
        yield f"{label:<34}{statistics.median(values):>8.1f}"


def recurrence(path: Path, limit: int) -> Iterable[str]:
    """For each remembered tag: its lines and how many were repeats of an earlier value."""
    lines: Counter[str] = Counter()
    distinct: dict[str, set[str]] = {tag: set() for tag in REMEMBERED_TAGS}
    with open_source(path) as stream:
        for n, raw in enumerate(iter_raw_records(stream)):
            if n == limit:
                break
            for tag, value in parse_fields(raw.text):
                if tag in distinct:
                    lines[tag] += 1
                    distinct[tag].add(value)
    for tag in REMEMBERED_TAGS:
        if lines[tag]:
            repeats = 1 - len(distinct[tag]) / lines[tag]
            yield f"{tag}: {lines[tag]} lines, {repeats:.0%} repeats"


def profile(path: Path, limit: int) -> None:
    """The functions our time goes to, on the first ``limit`` records."""
    with open_source(path) as stream:
        raws = [r.text for _, r in zip(range(limit), iter_raw_records(stream), strict=False)]
    profiler = cProfile.Profile()
    profiler.enable()
    for text in raws:
        record_to_document(text).index_json()
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000, help="records to generate")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each; the best counts")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile top 15")
    args = parser.parse_args()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    with tempfile.TemporaryDirectory(prefix="medline-bench-parse-") as tmp:
        path = write_corpus(Path(tmp) / "corpus.txt", args.records)
        size_mb = path.stat().st_size / 1024 / 1024
        print(f"corpus: {args.records} generated records, {size_mb:.0f} MB")
        modes = ["native", "python"] if native.BUILT else ["python"]
        runs: dict[str, list[tuple[int, float, int]]] = {mode: [] for mode in modes}
        runs_bio = []
        for _ in range(args.rounds):
            for mode in modes:
                runs[mode].append(ours(path, mode))
            runs_bio.append(biopython(path))
        n_bio, cpu_bio = min(runs_bio, key=lambda r: r[1])
        per_bio = cpu_bio / n_bio * 1e6
        print(f"{'':<58}{'records/s':>10}  {'CPU us/record':>14}  {'ratio':>6}")
        for mode in modes:
            n_ours, cpu_ours, json_bytes = min(runs[mode], key=lambda r: r[1])
            assert n_ours == n_bio == args.records, (n_ours, n_bio)
            per_ours = cpu_ours / n_ours * 1e6
            name = f"medline-ingest, {LABELS[mode]}: parse + validate + JSON"
            print(
                f"{name:<58}{n_ours / cpu_ours:>10.0f}  {per_ours:>14.1f}  "
                f"{per_bio / per_ours:>6.2f}"
            )
        name = "Biopython Bio.Medline.parse (raw parse only)"
        print(f"{name:<58}{n_bio / cpu_bio:>10.0f}  {per_bio:>14.1f}  {1:>6.2f}")
        print("ratio = Biopython CPU per record / ours (target >= 1, aim 2)")
        print(f"JSON produced: {json_bytes / n_ours:.0f} bytes per document")
        limit = min(SAMPLE_RECORDS, args.records)
        for mode in modes:
            print(f"\nwhere our time goes, {LABELS[mode]} (first {limit} records, CPU us/record):")
            for stage, micros in stages(path, limit, mode):
                print(f"  {stage:<28}{micros:>8.1f}")
        print("recurring values (the Python parser maps each once, then reuses it):")
        for line in recurrence(path, limit):
            print(f"  {line}")
        print(
            f"validate JSON, median of {CACHE_ROUNDS} interleaved rounds over "
            f"{CACHE_RECORDS} citations (CPU us/record):"
        )
        for line in string_cache(path):
            print(f"  {line}")
        if args.profile:
            profile(path, limit)


if __name__ == "__main__":
    main()
