"""What a batch costs on its way through Redis: JSON encoding, the Redis client, compression.

Run on demand, against the local Redis (``deploy/local/services up redis``)::

    python tests/benchmarks/bench_broker.py [--batches 20]

Each figure is CPU time of this process, per record, for batches of the default size (500
generated records, about 1.8 MB of JSON), best of three rounds, beside the alternative it was
chosen over, measured in the same run. It prints figures; it never passes or fails.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Run as a child process with hiredis hidden, for the Redis client's figures without it.
NO_HIREDIS = "--no-hiredis"
if NO_HIREDIS in sys.argv:
    sys.modules["hiredis"] = None  # type: ignore[assignment]  # import hiredis then fails

import redis  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from schemas.messages import BatchMessage, PackedBatch  # noqa: E402
from tests.benchmarks.corpus import write_corpus  # noqa: E402
from worker.medline_text import iter_raw_records, open_source  # noqa: E402
from worker.producer import iter_batches  # noqa: E402
from worker.redis_client import make_redis  # noqa: E402
from worker.settings import Settings  # noqa: E402

#: Records per batch, as the producer's default.
BATCH_RECORDS = 500
#: Rounds of each measurement; the best is printed.
ROUNDS = 3
#: The hash the Redis measurements write to (deleted afterwards).
SCRATCH_KEY = "medline-bench-broker"


def per_record(label: str, work: Callable[[], Any], records: int, baseline: float = 0.0) -> float:
    """Print and return the best CPU µs per record of ``work`` over :data:`ROUNDS` rounds."""
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    us = best / records * 1e6
    ratio = f"  ({baseline / us:.1f}x)" if baseline else ""
    print(f"  {label:<52}{us:8.2f} µs/record{ratio}", flush=True)
    return us


def make_batches(count: int, tmp: Path) -> list[BatchMessage]:
    corpus = write_corpus(tmp / "corpus.txt", count * BATCH_RECORDS)
    with open_source(corpus) as stream:
        return list(
            iter_batches(
                iter_raw_records(stream),
                job_id="bench",
                source=str(corpus),
                fmt="medline",
                max_records=BATCH_RECORDS,
                max_bytes=64 * 1024 * 1024,
            )
        )


def bench_json(batches: list[BatchMessage], records: int) -> None:
    print("batch JSON (producer writes, worker reads):")
    slow = per_record(
        "pydantic model_dump_json", lambda: [b.model_dump_json() for b in batches], records
    )
    per_record(
        "BatchMessage.to_json (orjson)", lambda: [b.to_json() for b in batches], records, slow
    )
    data = [b.to_json() for b in batches]
    slow = per_record(
        "pydantic model_validate_json",
        lambda: [BatchMessage.model_validate_json(d) for d in data],
        records,
    )
    per_record(
        "BatchMessage.from_json (orjson, then pydantic)",
        lambda: [BatchMessage.from_json(d) for d in data],
        records,
        slow,
    )
    print("batch as stored in the pending hash (packed: JSON head, then the records' text):")
    as_json = per_record(
        "write: BatchMessage.to_json", lambda: [b.to_json() for b in batches], records
    )
    per_record(
        "write: PackedBatch.from_message",
        lambda: [PackedBatch.from_message(b).data for b in batches],
        records,
        as_json,
    )
    packed = [PackedBatch.from_message(b).data for b in batches]
    as_json = per_record(
        "read: BatchMessage.from_json, text to UTF-8",
        lambda: [[r.text.encode() for r in BatchMessage.from_json(d).records] for d in data],
        records,
    )
    per_record(
        "read: PackedBatch.unpack (text stays UTF-8)",
        lambda: [PackedBatch.unpack(p) for p in packed],
        records,
        as_json,
    )


def bench_redis(batches: list[BatchMessage], records: int, settings: Settings) -> None:
    data = [b.to_json() for b in batches]
    ours = make_redis(settings)
    if redis.utils.HIREDIS_AVAILABLE:
        clients = {
            "the program's client (hiredis replies, Python packer)": ours,
            "redis-py's defaults with hiredis (hiredis packer)": redis.Redis.from_url(
                settings.broker_url
            ),
        }
    else:
        clients = {"the program's client without hiredis (redis-py's Python parser)": ours}
    try:
        for label, client in clients.items():

            def write(client: redis.Redis = client) -> None:
                for i, value in enumerate(data):
                    client.hset(SCRATCH_KEY, str(i), value)

            def read(client: redis.Redis = client) -> None:
                for i in range(len(data)):
                    client.hget(SCRATCH_KEY, str(i))

            print(f" {label}")
            per_record("write (HSET, producer)", write, records)
            per_record("read (HGET, worker)", read, records)
    finally:
        ours.delete(SCRATCH_KEY)


def bench_compression(batches: list[BatchMessage], records: int) -> None:
    data = [b.to_json() for b in batches]
    size = sum(map(len, data))
    codecs: dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]] = {
        "zlib level 1": (lambda d: zlib.compress(d, 1), zlib.decompress)
    }
    try:
        import lz4.frame

        codecs["lz4 (frame, default level)"] = (lz4.frame.compress, lz4.frame.decompress)
    except ImportError:
        print("  (lz4 not installed: pip install -e '.[bench]')")
    try:
        import zstandard

        compressor, decompressor = zstandard.ZstdCompressor(level=1), zstandard.ZstdDecompressor()
        codecs["zstd level 1"] = (compressor.compress, decompressor.decompress)
    except ImportError:
        print("  (zstandard not installed: pip install -e '.[bench]')")
    print("compressing batches (what Redis would be spared, at what CPU):")
    for label, (compress, decompress) in codecs.items():
        packed = [compress(d) for d in data]
        ratio = size / sum(map(len, packed))
        print(f" {label}: {ratio:.1f}x smaller")
        per_record("compress (producer)", lambda c=compress: [c(d) for d in data], records)
        per_record("decompress (worker)", lambda d=decompress, z=packed: [d(p) for p in z], records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=20, help="batches of 500 records")
    parser.add_argument(NO_HIREDIS, action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    settings = Settings()
    with tempfile.TemporaryDirectory(prefix="medline-bench-") as tmp:
        batches = make_batches(args.batches, Path(tmp))
    records = sum(len(b.records) for b in batches)
    if args.no_hiredis:
        bench_redis(batches, records, settings)
        return
    size = sum(len(b.to_json()) for b in batches) / len(batches) / 1e6
    print(f"{len(batches)} batches, {records} records, {size:.2f} MB of JSON each")
    bench_json(batches, records)
    print("storing a batch in Redis and reading it back:")
    bench_redis(batches, records, settings)
    # hiredis changes redis-py once imported; its absence is measured in a process of its own.
    command = [sys.executable, __file__, "--batches", str(args.batches), NO_HIREDIS]
    subprocess.run(command, check=True)
    bench_compression(batches, records)


if __name__ == "__main__":
    main()
