"""This project's throughput at several batch and bulk request sizes, in interleaved rounds.

Run on demand, against the local services (``deploy/local/services up``)::

    python tests/benchmarks/bench_batches.py [--records 60000] [--rounds 3] [SIZES ...]

Each SIZE is ``BATCH/BULK``: records per batch (``MEDLINE_BATCH_RECORDS``) and documents per
``_bulk`` request (``MEDLINE_BULK_CHUNK_DOCS``); default ``500/500 1000/500 1000/1000``. Every
size is a variant of ``bench_settings.py``: (c) of ``bench_pipeline.py`` over the same generated
corpus, the sizes in turn, round after round, so that the machine's drift falls on all of them
alike. It prints records/s and the CPU per record of the workers, the producer and the services
for every run, and each size's median records/s against the first size's. It prints figures; it
never passes or fails.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.benchmarks.bench_settings import compare  # noqa: E402

#: Sizes compared when none are given: the default before 2026-12-03, the default, and
#: bulk requests of the size the ceiling loader's probes found best.
DEFAULT_SIZES = ("500/500", "1000/500", "1000/1000")
#: Batches a byte limit would otherwise cut short: the record count is what is compared.
BATCH_BYTES = 64 * 1024 * 1024


def parse_size(text: str) -> tuple[int, int]:
    """``"1000/500"`` → (1000, 500)."""
    try:
        batch, bulk = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not BATCH/BULK, e.g. 1000/500") from None
    if batch < 1 or bulk < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: sizes must be at least 1")
    return batch, bulk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", nargs="*", type=parse_size, help="BATCH/BULK sizes")
    parser.add_argument("--records", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    args = parser.parse_args()
    sizes = args.sizes or [parse_size(size) for size in DEFAULT_SIZES]
    variants = {
        f"{batch}/{bulk}": {
            "MEDLINE_BATCH_RECORDS": str(batch),
            "MEDLINE_BULK_CHUNK_DOCS": str(bulk),
            "MEDLINE_BATCH_BYTES": str(BATCH_BYTES),
        }
        for batch, bulk in sizes
    }
    compare(variants, args.records, args.rounds, args.workers)


if __name__ == "__main__":
    main()
