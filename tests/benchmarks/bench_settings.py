"""This project's throughput under several settings, in interleaved rounds.

Run on demand, against the local services (``deploy/local/services up``)::

    python tests/benchmarks/bench_settings.py [--records 100000] [--rounds 5] \\
        NAME:MEDLINE_X=V[,MEDLINE_Y=W] ...

for instance ``nice0:MEDLINE_WORKER_NICE=0 nice10:MEDLINE_WORKER_NICE=10``. Each variant runs
(c) of ``bench_pipeline.py`` (``enqueue --wait`` and ``--workers`` worker processes, or the
variant's ``MEDLINE_WORKER_CONCURRENCY``, into a fresh index)
with its settings in the environment of the producer and the workers, over the same generated
corpus. The variants run in turn, round after round, in the opposite order every other round,
so that the machine's drift falls on all of them alike. It prints records/s and the CPU per
record of the workers, the producer and the services for every run, then each variant's
median records/s and how many rounds it won against the first variant. It prints figures; it
never passes or fails.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.benchmarks.bench_pipeline import run_pipeline  # noqa: E402
from tests.benchmarks.corpus import write_corpus  # noqa: E402
from worker.es_client import make_client  # noqa: E402
from worker.settings import Settings  # noqa: E402

#: Variant name → the MEDLINE_* settings it runs with.
Variants = dict[str, dict[str, str]]


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """``"nice0:MEDLINE_WORKER_NICE=0"`` → ("nice0", {"MEDLINE_WORKER_NICE": "0"}); ``"base:"``
    is the defaults."""
    name, colon, assignments = text.partition(":")
    if not colon:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected NAME:MEDLINE_X=V[,MEDLINE_Y=W] (or NAME: for the defaults)"
        )
    settings: dict[str, str] = {}
    for assignment in filter(None, assignments.split(",")):
        key, equals, value = assignment.partition("=")
        if not equals or not key.startswith("MEDLINE_"):
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected NAME:MEDLINE_X=V[,MEDLINE_Y=W], "
                "e.g. nice0:MEDLINE_WORKER_NICE=0"
            )
        settings[key] = value
    if not name:
        raise argparse.ArgumentTypeError(f"{text!r}: the variant needs a name before ':'")
    return name, settings


def compare(variants: Variants, records: int, rounds: int, workers: int) -> dict[str, list[float]]:
    """Run every variant ``rounds`` times, interleaved; print each run and the summary.

    :returns: records/s of each variant, round by round.
    """
    settings = Settings()
    es = make_client(settings).options(request_timeout=120)
    es.cluster.health(wait_for_status="yellow", timeout="30s")
    rates: dict[str, list[float]] = {name: [] for name in variants}
    width = max(map(len, variants))
    with tempfile.TemporaryDirectory(prefix="medline-bench-") as tmpdir:
        tmp = Path(tmpdir)
        corpus = write_corpus(tmp / "corpus.txt", records)
        print(f"{records} records, {workers} worker processes", flush=True)
        for round_no in range(1, rounds + 1):
            order = list(variants) if round_no % 2 else list(reversed(variants))
            for name in order:
                env = dict(variants[name])
                batch = int(env.get("MEDLINE_BATCH_RECORDS", settings.batch_records))
                processes = int(env.get("MEDLINE_WORKER_CONCURRENCY", workers))
                run = run_pipeline(settings, es, corpus, records, processes, batch, tmp, **env)
                rates[name].append(run.rate)
                services = ", ".join(f"{n} {us:.0f}" for n, us in run.service_us.items())
                print(
                    f"  round {round_no} {name:<{width}} {run.rate:7.0f} rec/s   CPU µs per "
                    f"record: workers {run.worker_cpu_per_record_ms * 1000:.0f} (main "
                    f"{run.worker_main_cpu_per_record_ms * 1000:.1f}), producer "
                    f"{run.producer_cpu_per_record_ms * 1000:.0f}, {services}; pool "
                    f"{run.pool_faults_per_record:.2f} faults, "
                    f"{run.pool_system_us_per_record:.0f} µs system",
                    flush=True,
                )
    print()
    first = next(iter(rates))
    for name, values in rates.items():
        listed = ", ".join(f"{v:.0f}" for v in values)
        ratio = statistics.median(values) / statistics.median(rates[first])
        wins = sum(mine > theirs for mine, theirs in zip(values, rates[first], strict=True))
        versus = "" if name == first else f", won {wins} of {rounds} rounds against {first}"
        print(
            f"{name:<{width}} median {statistics.median(values):7.0f} rec/s ({listed}); "
            f"{ratio:.3f} of {first}{versus}"
        )
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "variants", nargs="+", type=parse_variant, help="NAME:MEDLINE_X=V[,MEDLINE_Y=W]"
    )
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="worker processes (a variant's MEDLINE_WORKER_CONCURRENCY overrides it)",
    )
    args = parser.parse_args()
    variants = dict(args.variants)
    if len(variants) != len(args.variants):
        parser.error("variant names must differ")
    compare(variants, args.records, args.rounds, args.workers)


if __name__ == "__main__":
    main()
