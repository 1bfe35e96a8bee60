"""End-to-end throughput against Elasticsearch's own bulk ceiling and a naive script.

Run on demand, against the local services (``deploy/local/services up``)::

    python tests/benchmarks/bench_pipeline.py [--records N] [--workers 2] [--rounds 3]
                                              [--mapping nested|flat]

In one run, on one machine, into fresh indices ((a) and (c) with the same template and mapping),
on a generated corpus
big enough for the ceiling to index for at least 30 s (sized from its probe unless
``--records`` says otherwise), it measures:

(a) ceiling: the same documents, already serialised, posted with ``_bulk`` by a minimal
    loader (concurrent requests, responses filtered to errors, the product's client) at the
    best batch size it finds, timed like (c) from the bulk-load settings to the final refresh;
(b) naive: one process, ``Bio.Medline.parse`` plus ``elasticsearch.helpers.bulk`` with its
    defaults;
(c) this project: ``medline-ingest enqueue`` plus K worker processes until the job completes;

and prints records/s, the ratios c/a and c/b, worker CPU time per record (and the part of it in
Celery's main process, and the page faults and system CPU of its pool processes), the
producer's CPU time per record, and peak memory of the producer and of each worker process.
With the local services it also prints each contender's Elasticsearch and Redis CPU time per
record (Redis's forks for AOF rewrites and snapshots included): the
ratios alone cannot tell whether a gap is this project's or Elasticsearch's. Then how
throughput changes with worker processes and batch size, and how the producer's peak memory
changes with input size. It prints figures; it never passes or fails.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from elasticsearch import Elasticsearch, helpers
from redis import Redis

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.benchmarks.corpus import write_corpus, write_corpus_of_size  # noqa: E402
from worker.bulk_indexer import BULK_FILTER_PATH  # noqa: E402
from worker.documents import record_to_document  # noqa: E402
from worker.es_client import make_client  # noqa: E402
from worker.index_admin import bulk_load_tuning, delete_index, ensure_index  # noqa: E402
from worker.jobs import JobStore  # noqa: E402
from worker.medline_text import iter_raw_records, open_source  # noqa: E402
from worker.redis_client import make_redis  # noqa: E402
from worker.settings import Settings  # noqa: E402

#: Bulk sizes the ceiling loader tries before its full run.
CEILING_BATCH_SIZES = (250, 500, 1000, 2000, 4000)
#: Concurrent _bulk requests of the ceiling loader (as many as the CPUs, like a tuned loader).
CEILING_CONCURRENCY = max(2, os.cpu_count() or 2)
#: Batch sizes of the scaling runs: the default before 2026-12-03, the default, and larger.
SCALING_BATCH_SIZES = (500, 1000, 2000)
#: Documents per probe of a ceiling batch size.
PROBE_DOCS = 20_000
#: Loads of the probe per bulk size, in ascending then descending order of size: one pass
#: upward could not tell sizes a few per cent apart on a shared machine, and on 2026-12-07 it
#: picked 4,000, which then lost to 1,000 over the full corpus in 3 rounds of 3 (1.02-1.07x).
PROBE_PASSES = 2
#: Seconds the ceiling's full run should take at least (the issue's "at least 30 s of
#: indexing"): with ``--records`` unset, the corpus is sized from the probe's best rate.
MIN_INDEXING_SECONDS = 30.0
#: The issue's targets: c/a and c/b at least these. Ratios print with three decimals and a
#: verdict, since two decimals showed a c/a of 0.798 as "0.80" beside "target >= 0.8".
TARGETS = {"c/a": 0.8, "c/b": 2.0}
#: Whether (a) and (c) turn refresh and replicas off for their load (``--no-tune-index``: not).
TUNE_INDEX = True
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# --- process measurements -------------------------------------------------------------------


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a live process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pool_paging(pids: list[int]) -> tuple[int, float]:
    """Minor page faults and system CPU seconds of live processes, summed: what a worker's
    pool processes pay to fault fresh memory in (see ``MEDLINE_KEEP_FREED_MEMORY``)."""
    faults, ticks = 0, 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        faults += int(fields[7])
        ticks += int(fields[12])
    return faults, ticks / CLK_TCK


def cpu_seconds(pid: int, reaped_children: bool = False) -> float:
    """User plus system CPU time of a live process, and of its children that it has waited
    for if ``reaped_children`` (Redis's forks for AOF rewrites and snapshots)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def machine_cpu() -> tuple[float, float]:
    """(busy, stolen) CPU seconds of the whole machine so far, all cores: busy is user,
    system and interrupts (idle and I/O wait left out); stolen is what the hypervisor gave
    other guests, the noise of a shared machine."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


class CoresBusy:
    """How many cores the machine kept busy, and had stolen, between creation and
    :meth:`stop`: what tells a contender limited by CPU from one that leaves cores idle."""

    def __init__(self) -> None:
        self._started = time.perf_counter()
        self._busy, self._stolen = machine_cpu()
        self.busy = self.stolen = 0.0

    def stop(self) -> None:
        seconds = time.perf_counter() - self._started
        busy, stolen = machine_cpu()
        self.busy = (busy - self._busy) / seconds
        self.stolen = (stolen - self._stolen) / seconds


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


#: Pid files of the local services (deploy/local/services), for their CPU time per record.
SERVICE_PID_FILES = {
    "elasticsearch": REPO / ".state/elasticsearch/node.pid",
    "redis": REPO / ".state/redis/redis.pid",
}


def jvm_gc_seconds(es: Elasticsearch) -> float:
    """Seconds the Elasticsearch node's collectors have run so far (young and old, summed).

    Collection time is wall time, not CPU: with G1's parallel threads it understates the CPU
    a collection took, so it says how the node's CPU divides, not how much GC costs exactly.
    """
    stats = es.nodes.stats(node_id="_local", metric="jvm", filter_path="nodes.*.jvm.gc.collectors")
    (node,) = stats["nodes"].values()
    collectors = node["jvm"]["gc"]["collectors"].values()
    return sum(c["collection_time_in_millis"] for c in collectors) / 1000


def service_cpu(es: Elasticsearch | None = None) -> dict[str, float]:
    """CPU seconds used so far by each local service that is running (empty when remote),
    and with ``es``, the node's collection time as ``elasticsearch gc (wall)``."""
    used = {}
    for name, pid_file in SERVICE_PID_FILES.items():
        try:
            used[name] = cpu_seconds(int(pid_file.read_text().split()[0]), reaped_children=True)
        except (OSError, ValueError, IndexError):
            continue
    if es is not None and "elasticsearch" in used:
        used["elasticsearch gc (wall)"] = jvm_gc_seconds(es)
    return used


def service_us_since(
    before: dict[str, float], records: int, es: Elasticsearch | None = None
) -> dict[str, float]:
    """Microseconds per record each service spent since the ``before`` snapshot (taken with
    the same ``es``, or without)."""
    after = service_cpu(es)
    return {
        name: (after[name] - used) / records * 1e6 for name, used in before.items() if name in after
    }


class PeakWatcher:
    """Samples a process's VmHWM until it exits (VmHWM only grows, so the last sample holds)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                self.peak = max(self.peak, peak_rss_mb(self.pid))
            except (FileNotFoundError, ProcessLookupError):
                return
            time.sleep(0.05)

    def join(self) -> float:
        self._thread.join(timeout=5)
        return self.peak


# --- the three contenders -------------------------------------------------------------------


@dataclass
class Run:
    name: str
    records: int
    seconds: float
    note: str = ""
    #: CPU microseconds per record spent by each local service during the run.
    service_us: dict[str, float] = field(default_factory=dict)
    #: Cores the whole machine kept busy, and had stolen by the hypervisor, during the run.
    cores: CoresBusy | None = None

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


def serialise_corpus(path: Path) -> list[tuple[str, bytes]]:
    """(pmid, document JSON) for every record, with this project's parser (outside timing)."""
    out = []
    with open_source(path) as stream:
        for raw in iter_raw_records(stream):
            document = record_to_document(raw.text)
            out.append((document.pmid, orjson.dumps(document.index_body())))
    return out


def chunks(docs: list[tuple[str, bytes]], size: int) -> Iterator[list[tuple[str, bytes]]]:
    for start in range(0, len(docs), size):
        yield docs[start : start + size]


def post_all(es: Elasticsearch, index: str, docs: list[tuple[str, bytes]], size: int) -> None:
    """Post pre-serialised documents with concurrent _bulk requests, asking, as the workers
    do, only for the errors in each response."""
    bodies = [
        b"".join(b'{"index":{"_id":"%s"}}\n%s\n' % (pmid.encode(), body) for pmid, body in chunk)
        for chunk in chunks(docs, size)
    ]
    queue = list(reversed(bodies))
    lock = threading.Lock()
    errors: list[str] = []

    def loader() -> None:
        while True:
            with lock:
                if not queue:
                    return
                body = queue.pop()
            response = es.options(request_timeout=120).bulk(
                operations=body, index=index, filter_path=BULK_FILTER_PATH
            )
            if response["errors"]:
                errors.append(str(response["items"][:1]))

    threads = [threading.Thread(target=loader) for _ in range(CEILING_CONCURRENCY)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"ceiling loader got errors: {errors[:3]}")


def timed_load(es: Elasticsearch, alias: str, docs: list[tuple[str, bytes]], size: int) -> float:
    """Seconds to load ``docs`` as the pipeline's job is timed: from the bulk-load settings
    to the refresh that makes the documents searchable."""
    started = time.perf_counter()
    with bulk_load_tuning(es, alias) if TUNE_INDEX else nullcontext():
        post_all(es, alias, docs, size)
    return time.perf_counter() - started


def fresh_alias(es: Elasticsearch, settings: Settings, prefix: str) -> str:
    alias = f"bench-{prefix}-{uuid.uuid4().hex[:8]}"
    ensure_index(es, settings, alias)
    return alias


def best_bulk_size(
    es: Elasticsearch, settings: Settings, probe: list[tuple[str, bytes]]
) -> tuple[int, float]:
    """The bulk size of :data:`CEILING_BATCH_SIZES` at which the ceiling loader is fastest,
    and its rate (documents/s): each size loads ``probe`` into a fresh index
    :data:`PROBE_PASSES` times, the sizes in turn upward then downward, and is scored by its
    total time.

    One untimed load comes first: a node just started runs its indexing code interpreted
    until the JIT has compiled it, which made the first size probed look slow."""
    alias = fresh_alias(es, settings, "warmup")
    try:
        timed_load(es, alias, probe, CEILING_BATCH_SIZES[-1])
    finally:
        delete_index(es, alias)
    seconds = dict.fromkeys(CEILING_BATCH_SIZES, 0.0)
    for pass_no in range(PROBE_PASSES):
        order = CEILING_BATCH_SIZES if pass_no % 2 == 0 else CEILING_BATCH_SIZES[::-1]
        for size in order:
            alias = fresh_alias(es, settings, "probe")
            try:
                taken = timed_load(es, alias, probe, size)
            finally:
                delete_index(es, alias)
            seconds[size] += taken
            print(
                f"    ceiling probe {pass_no + 1}: bulk size {size:>5}: "
                f"{len(probe) / taken:8.0f} docs/s",
                flush=True,
            )
    best_size = min(seconds, key=lambda size: seconds[size])
    best_rate = PROBE_PASSES * len(probe) / seconds[best_size]
    print(
        f"    ceiling bulk size: {best_size} ({best_rate:.0f} docs/s over the passes)", flush=True
    )
    return best_size, best_rate


#: How much faster than its probe the ceiling may run and still index for the full time.
#: The probe's index is smaller, and the shared machine speeds up and slows down within a run:
#: with 1.15, the ceiling indexed for under 30 s in 8 rounds of 15 on 2026-12-07 (11:32-12:29
#: UTC), up to 1.38x its probe's rate.
CORPUS_MARGIN = 1.5


def records_for(rate: float, seconds: float) -> int:
    """Records that take at least ``seconds`` at ``rate`` records/s times
    :data:`CORPUS_MARGIN`, rounded up to 10,000."""
    return max(PROBE_DOCS, math.ceil(rate * seconds * CORPUS_MARGIN / 10_000) * 10_000)


def run_ceiling(
    es: Elasticsearch, settings: Settings, docs: list[tuple[str, bytes]], best_size: int
) -> Run:
    alias = fresh_alias(es, settings, "ceiling")
    try:
        services, cores = service_cpu(es), CoresBusy()
        seconds = timed_load(es, alias, docs, best_size)
        cores.stop()
        service_us = service_us_since(services, len(docs), es)
        es.indices.refresh(index=alias)  # for the count below; untimed, as in (c)
        count = es.count(index=alias)["count"]
    finally:
        delete_index(es, alias)
    assert count == len({pmid for pmid, _ in docs}), f"ceiling indexed {count}"
    if seconds < MIN_INDEXING_SECONDS:
        print(
            f"    note: the ceiling indexed for {seconds:.1f} s only, under "
            f"{MIN_INDEXING_SECONDS:.0f} s; start-up and the final refresh weigh more "
            "(raise --records)",
            flush=True,
        )
    return Run(
        "(a) ceiling: pre-serialised _bulk",
        len(docs),
        seconds,
        f"bulk size {best_size} x{CEILING_CONCURRENCY} concurrent",
        service_us,
        cores,
    )


def run_naive(es: Elasticsearch, path: Path, records: int) -> Run:
    from Bio import Medline

    index = f"bench-naive-{uuid.uuid4().hex[:8]}"

    def actions() -> Iterator[dict]:
        with open(path, encoding="utf-8") as handle:
            for record in Medline.parse(handle):
                yield {"_index": index, "_id": record["PMID"], "_source": dict(record)}

    services, cores = service_cpu(es), CoresBusy()
    started = time.perf_counter()
    ok, _ = helpers.bulk(es, actions())
    seconds = time.perf_counter() - started
    cores.stop()
    service_us = service_us_since(services, ok, es)
    es.indices.delete(index=index)
    return Run(
        "(b) naive: Bio.Medline + helpers.bulk",
        ok,
        seconds,
        "one process, defaults",
        service_us,
        cores,
    )


@dataclass
class PipelineRun(Run):
    worker_cpu_per_record_ms: float = 0.0
    #: The part of it spent by the worker's main process (Celery's consumer and pool feeder).
    worker_main_cpu_per_record_ms: float = 0.0
    producer_cpu_per_record_ms: float = 0.0
    producer_peak_mb: float = 0.0
    worker_peaks_mb: tuple[float, ...] = ()
    #: Minor page faults per record in the worker's pool processes, and their system CPU.
    pool_faults_per_record: float = 0.0
    pool_system_us_per_record: float = 0.0


def bench_env(settings: Settings, alias: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "MEDLINE_BROKER_URL": settings.broker_url,
        "MEDLINE_ES_URL": settings.es_url,
        "MEDLINE_INDEX": alias,
        "MEDLINE_INGEST_QUEUE": alias,
        "MEDLINE_KEY_PREFIX": alias,
        "MEDLINE_LOG_LEVEL": "WARNING",
        **extra,
    }


def start_workers(env: dict[str, str], processes: int, log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "worker.cli",
            "worker",
            "-c",
            str(processes),
            "-n",
            f"bench-{uuid.uuid4().hex[:6]}@%h",
        ],
        env={**env, "MEDLINE_LOG_LEVEL": "INFO"},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=REPO,
    )
    deadline = time.monotonic() + 120
    while " ready." not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker did not start:\n{log.read_text()}")
        time.sleep(0.2)
    return proc


def forget_run(redis_client: Redis, alias: str) -> None:
    """Delete what a run of (c) left in Redis: its keys (the run's key prefix and queue are
    ``alias``) and kombu's binding of its queue, which would otherwise pile up run after run."""
    for key in redis_client.scan_iter(match=f"{alias}*"):
        redis_client.delete(key)
    redis_client.delete(f"_kombu.binding.{alias}")


def run_pipeline(
    settings: Settings,
    es: Elasticsearch,
    path: Path,
    records: int,
    processes: int,
    batch_records: int,
    workdir: Path,
    **extra_env: str,
) -> PipelineRun:
    """(c): ``enqueue --wait`` of ``path`` with ``processes`` worker processes, into a fresh
    index; ``extra_env`` are settings for the producer and the workers (``MEDLINE_...``)."""
    alias = fresh_alias(es, settings, "pipeline")
    env = bench_env(settings, alias, **extra_env)
    workers = start_workers(env, processes, workdir / f"worker-{alias}.log")
    pool = children(workers.pid)
    main_before = cpu_seconds(workers.pid)
    cpu_before = sum(cpu_seconds(p) for p in pool) + main_before
    paging_before = pool_paging(pool)
    services, cores = service_cpu(es), CoresBusy()
    try:
        started = time.perf_counter()
        producer = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "worker.cli",
                "enqueue",
                str(path),
                "--wait",
                *(["--tune-index"] if TUNE_INDEX else []),
                "--batch-records",
                str(batch_records),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=REPO,
        )
        watcher = PeakWatcher(producer.pid)
        assert producer.stdout is not None
        out = producer.stdout.read()
        # wait4, not communicate(): its resource usage is the producer's CPU time.
        _, status, usage = os.wait4(producer.pid, 0)
        producer.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        cores.stop()
        service_us = service_us_since(services, records, es)
        producer_peak = watcher.join()
        if producer.returncode != 0:
            raise RuntimeError(f"enqueue exited {producer.returncode}")
        summary = orjson.loads(out)
        pool_after = children(workers.pid)
        # The same pool processes as before the job, unless one was replaced (then: 0).
        faults, system_s = (
            [a - b for a, b in zip(pool_paging(pool), paging_before, strict=True)]
            if pool_after == pool
            else (0, 0.0)
        )
        pool = pool_after
        main_cpu = cpu_seconds(workers.pid) - main_before
        cpu = sum(cpu_seconds(p) for p in pool) + main_cpu + main_before - cpu_before
        peaks = tuple(peak_rss_mb(p) for p in [workers.pid, *pool])
    finally:
        os.killpg(workers.pid, signal.SIGTERM)
        workers.wait(timeout=120)
        delete_index(es, alias)
        forget_run(make_redis(settings), alias)
    if summary["indexed"] != records:
        raise RuntimeError(f"pipeline indexed {summary['indexed']} of {records}: {summary}")
    return PipelineRun(
        f"(c) medline-ingest, {processes} worker processes",
        records,
        seconds,
        # The job's own span: from its start to its last batch's commit.
        f"batch {batch_records}, job {summary['duration_s']:.1f} s",
        service_us,
        cores,
        worker_cpu_per_record_ms=cpu / records * 1000,
        worker_main_cpu_per_record_ms=main_cpu / records * 1000,
        producer_cpu_per_record_ms=(usage.ru_utime + usage.ru_stime) / records * 1000,
        producer_peak_mb=producer_peak,
        worker_peaks_mb=peaks,
        pool_faults_per_record=faults / records,
        pool_system_us_per_record=system_s / records * 1e6,
    )


def producer_peak_for_size(settings: Settings, es: Elasticsearch, size_mb: int, tmp: Path) -> str:
    """Enqueue a corpus of ``size_mb`` (no workers) and report the producer's peak memory."""
    path = tmp / f"corpus-{size_mb}mb.txt"
    count = write_corpus_of_size(path, size_mb * 1024 * 1024)
    alias = fresh_alias(es, settings, "producer")
    # No worker takes the batches here: enqueue must not wait for room.
    env = bench_env(settings, alias, MEDLINE_MAX_QUEUED_BATCHES="0")
    started = time.perf_counter()
    producer = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "enqueue", str(path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    watcher = PeakWatcher(producer.pid)
    producer.wait()
    seconds = time.perf_counter() - started
    peak = watcher.join()
    redis_client = make_redis(settings)
    jobs = JobStore(redis_client, Settings(key_prefix=alias))
    enqueued = sum(j.records for j in jobs.recent(5))
    forget_run(redis_client, alias)
    delete_index(es, alias)
    path.unlink()
    return (
        f"  {size_mb:>5} MB input ({count} records, {enqueued} enqueued): producer peak "
        f"{peak:6.1f} MiB, {size_mb / seconds:5.1f} MB/s"
    )


def ratio_line(label: str, value: float) -> str:
    """``c/a = 0.798   (target >= 0.8: not met)``."""
    target = TARGETS[label]
    verdict = "met" if value >= target else "not met"
    return f"{label} = {value:.3f}   (target >= {target:g}: {verdict})"


def summarise_rounds(ratios: list[tuple[float, float]]) -> list[str]:
    """Each ratio's median over the rounds and its rounds, then how many rounds met both."""
    lines = []
    for index, label in enumerate(TARGETS):
        values = [pair[index] for pair in ratios]
        listed = ", ".join(f"{v:.3f}" for v in values)
        met = sum(v >= TARGETS[label] for v in values)
        lines.append(
            f"{label} over {len(values)} rounds: median {statistics.median(values):.3f} "
            f"({listed}); target met in {met} of {len(values)}"
        )
    both = sum(a >= TARGETS["c/a"] and b >= TARGETS["c/b"] for a, b in ratios)
    lines.append(f"rounds meeting both targets: {both} of {len(ratios)}")
    return lines


def announced(label: str, fn: Callable[[], Run]) -> Run:
    print(f"  running {label} ...", flush=True)
    return fn()


def report(ceiling: Run, naive: Run, ours: PipelineRun) -> None:
    """Print one round's figures."""
    print()
    print(f"{'':<46}{'records/s':>12}  {'seconds':>8}  note")
    for run in (ceiling, naive, ours):
        print(f"{run.name:<46}{run.rate:>12.0f}  {run.seconds:>8.1f}  {run.note}")
    for run in (ceiling, naive, ours):
        if run.service_us:
            spent = ", ".join(f"{name} {us:.0f}" for name, us in run.service_us.items())
            print(f"  CPU µs per record, {run.name[:3]} {spent}")
    for run in (ceiling, naive, ours):
        if run.cores is not None:
            print(
                f"  cores busy, {run.name[:3]} {run.cores.busy:.2f} of {os.cpu_count()}"
                f" (stolen by the hypervisor: {run.cores.stolen:.2f})"
            )
    print()
    print(ratio_line("c/a", ours.rate / ceiling.rate))
    print(ratio_line("c/b", ours.rate / naive.rate))
    print(
        f"worker CPU time per record: {ours.worker_cpu_per_record_ms:.3f} ms "
        f"(main process {ours.worker_main_cpu_per_record_ms:.3f})"
    )
    print(
        f"pool processes: {ours.pool_faults_per_record:.2f} page faults and "
        f"{ours.pool_system_us_per_record:.1f} µs of system CPU per record"
    )
    print(f"producer CPU time per record: {ours.producer_cpu_per_record_ms:.3f} ms")
    print(f"producer peak memory: {ours.producer_peak_mb:.1f} MiB")
    peaks = ", ".join(f"{p:.0f}" for p in ours.worker_peaks_mb)
    print(f"worker peak memory (main, pool...): {peaks} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--records",
        type=int,
        default=0,
        help="corpus size (records); default: enough for the ceiling to index for "
        f"{MIN_INDEXING_SECONDS:.0f} s, from its probe",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes for (c)")
    parser.add_argument(
        "--batch-records",
        type=int,
        default=Settings().batch_records,
        help="records per batch for (c); default: MEDLINE_BATCH_RECORDS or its default",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat the three contenders this many times ((c) between (a) and (b), which swap "
        "sides each round) and print the median ratios",
    )
    parser.add_argument("--scaling-records", type=int, default=20_000)
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-sizes", default="100,1024", help="producer input sizes, MB")
    parser.add_argument(
        "--mapping",
        choices=("nested", "flat"),
        help="index mapping of (a) and (c) (MEDLINE_INDEX_MAPPING); default: the setting's",
    )
    parser.add_argument(
        "--no-tune-index",
        action="store_true",
        help="load (a) and (c) with the template's refresh and replicas, not bulk-load settings",
    )
    args = parser.parse_args()
    global TUNE_INDEX
    TUNE_INDEX = not args.no_tune_index

    if args.mapping:
        os.environ["MEDLINE_INDEX_MAPPING"] = args.mapping  # (c)'s processes inherit it
    settings = Settings()
    print(f"index mapping of (a) and (c): {settings.index_mapping}", flush=True)
    # The product's client (bulk bodies sent without copies) for the ceiling loader and the
    # index admin; the naive script gets a stock client, as its author would write it.
    es = make_client(settings).options(request_timeout=120)
    es.cluster.health(wait_for_status="yellow", timeout="30s")
    with tempfile.TemporaryDirectory(prefix="medline-bench-") as tmpdir:
        tmp = Path(tmpdir)
        # The generator is seeded and sequential: the probe's records are the corpus's first.
        probe = serialise_corpus(write_corpus(tmp / "probe.txt", PROBE_DOCS))
        print(f"  probing the ceiling's bulk size ({PROBE_DOCS} documents) ...", flush=True)
        best_size, best_rate = best_bulk_size(es, settings, probe)
        del probe
        args.records = args.records or records_for(best_rate, MIN_INDEXING_SECONDS)
        corpus = write_corpus(tmp / "corpus.txt", args.records)
        size_mb = corpus.stat().st_size / 1024 / 1024
        print(f"corpus: {args.records} records, {size_mb:.0f} MB, {os.cpu_count()} CPUs")
        docs = serialise_corpus(corpus)
        stock = Elasticsearch(settings.es_url, request_timeout=120)
        ratios: list[tuple[float, float]] = []
        for round_no in range(1, args.rounds + 1):
            if args.rounds > 1:
                print(f"round {round_no} of {args.rounds}", flush=True)
            contenders: dict[str, Callable[[], Run]] = {
                "ceiling": lambda: run_ceiling(es, settings, docs, best_size),
                "medline-ingest": lambda: run_pipeline(
                    settings, es, corpus, args.records, args.workers, args.batch_records, tmp
                ),
                "naive": lambda: run_naive(stock, corpus, args.records),
            }
            # (c) runs between the other two, and they swap sides each round: the machine's
            # drift during a round then weighs on c/a and c/b alike, and evens out over rounds.
            order = list(contenders) if round_no % 2 else list(reversed(contenders))
            runs = {label: announced(label, contenders[label]) for label in order}
            ceiling, naive, ours = runs["ceiling"], runs["naive"], runs["medline-ingest"]
            assert isinstance(ours, PipelineRun)
            report(ceiling, naive, ours)
            ratios.append((ours.rate / ceiling.rate, ours.rate / naive.rate))
        docs.clear()
        if args.rounds > 1:
            print()
            print("\n".join(summarise_rounds(ratios)))

        if not args.skip_scaling:
            print()
            print("scaling (records/s):")
            small = write_corpus(tmp / "small.txt", args.scaling_records, seed=7)
            for processes in (1, 2, 4):
                for batch in SCALING_BATCH_SIZES:
                    run = run_pipeline(
                        settings, es, small, args.scaling_records, processes, batch, tmp
                    )
                    print(f"  workers {processes}  batch {batch:>5}: {run.rate:8.0f}", flush=True)

        if not args.skip_memory:
            print()
            print("producer memory versus input size:")
            for size in (int(s) for s in args.memory_sizes.split(",")):
                print(producer_peak_for_size(settings, es, size, tmp), flush=True)


if __name__ == "__main__":
    main()
