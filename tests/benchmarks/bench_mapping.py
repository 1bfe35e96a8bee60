"""What the index mapping costs Elasticsearch per document: nested, flat, and steps between.

Run on demand, against the local services (``deploy/local/services up``)::

    python tests/benchmarks/bench_mapping.py [--records 20000] [--rounds 5]

Every variant indexes the same pre-serialised documents (this project's, from a generated
corpus) into a fresh index of its own, with concurrent ``_bulk`` requests as the ceiling
loader of ``bench_pipeline.py`` sends them, from the bulk-load settings to the final refresh.
The variants run in turn, round after round, so that the machine's drift falls on all of
them alike. Per variant it prints documents/s and Elasticsearch's CPU per document in each
round, their medians, and the median CPU as a ratio to the nested mapping's (to the first
variant's when nested does not run). It prints figures; it never passes or fails.

The variants are the product's two mappings and the steps between them:

- ``nested``: the nested mapping (``MEDLINE_INDEX_MAPPING=nested``, the default until 2026-12-07);
- ``no-raw``: nested, without the ``raw`` keyword sub-field of the title and the source (one
  unique term per citation each);
- ``objects``: nested MeSH headings, but authors, investigators and history as plain objects;
- ``mesh-object``: only the MeSH headings as plain objects;
- ``flat``: the flat mapping, the default: all of the above;
- ``flat-bare``: flat, with the documents' MeSH terms derived for it (``mesh_major_topics``,
  ``mesh_qualified_terms``) left out: what those terms cost.

A plain object loses what ``nested`` gives: a query can no longer ask for two fields of the
*same* entry (an author with an affiliation, a history status with its date; a descriptor that
is a major topic has terms of its own). See the README's "Index mapping".
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from schemas.document import DERIVED_MESH_FIELDS  # noqa: E402
from schemas.index_template import (  # noqa: E402
    UNIQUE_RAW_FIELDS,
    IndexMapping,
    build_index_template,
)
from tests.benchmarks.bench_pipeline import (  # noqa: E402
    post_all,
    serialise_corpus,
    service_cpu,
    service_us_since,
)
from tests.benchmarks.corpus import write_corpus  # noqa: E402
from worker.es_client import make_client  # noqa: E402
from worker.index_admin import BULK_LOAD_SETTINGS  # noqa: E402
from worker.settings import Settings  # noqa: E402

#: Documents per _bulk request: the size the ceiling loader's probes found best here.
BULK_SIZE = 1000

Mapping = dict[str, Any]


def without_raw(properties: Mapping) -> None:
    for name in UNIQUE_RAW_FIELDS:
        properties[name].pop("fields", None)


def people_and_history_as_objects(properties: Mapping) -> None:
    for name in ("authors", "investigators", "history"):
        properties[name].pop("type", None)


def mesh_as_object(properties: Mapping) -> None:
    properties["mesh"].pop("type", None)


@dataclass(frozen=True)
class Variant:
    """A mapping of the product, changed in place by ``change``, for documents without the
    fields ``without``."""

    mapping: IndexMapping
    change: Callable[[Mapping], None] | None = None
    without: tuple[str, ...] = ()


VARIANTS: dict[str, Variant] = {
    "nested": Variant("nested"),
    "no-raw": Variant("nested", without_raw),
    "objects": Variant("nested", people_and_history_as_objects),
    "mesh-object": Variant("nested", mesh_as_object),
    "flat": Variant("flat"),
    "flat-bare": Variant("flat", without=DERIVED_MESH_FIELDS),
}


def index_body(variant: str) -> Mapping:
    """Settings and mappings of a fresh index for ``variant``, bulk-load settings included."""
    spec = VARIANTS[variant]
    template = build_index_template("bench-mapping", mapping=spec.mapping)["template"]
    if spec.change is not None:
        spec.change(template["mappings"]["properties"])
    template["settings"].update(BULK_LOAD_SETTINGS)
    return template


def documents_for(variant: str, docs: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """``docs`` as ``variant`` indexes them: without its left-out fields, if any."""
    without = VARIANTS[variant].without
    if not without:
        return docs
    bare = []
    for pmid, body in docs:
        fields = orjson.loads(body)
        for name in without:
            fields.pop(name, None)
        bare.append((pmid, orjson.dumps(fields)))
    return bare


def load(es: Any, variant: str, docs: list[tuple[str, bytes]]) -> tuple[float, float]:
    """(documents/s, Elasticsearch CPU µs per document) of one load of ``docs``."""
    index = f"bench-mapping-{variant}-{uuid.uuid4().hex[:8]}"
    es.indices.create(index=index, **index_body(variant))
    try:
        before = service_cpu()
        started = time.perf_counter()
        post_all(es, index, docs, BULK_SIZE)
        es.indices.refresh(index=index)
        seconds = time.perf_counter() - started
        cpu = service_us_since(before, len(docs)).get("elasticsearch", float("nan"))
        count = es.count(index=index)["count"]
    finally:
        es.indices.delete(index=index)
    assert count == len({pmid for pmid, _ in docs}), f"{variant} indexed {count}"
    return len(docs) / seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}"
    )
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")

    es = make_client(Settings()).options(request_timeout=120)
    es.cluster.health(wait_for_status="yellow", timeout="30s")
    with tempfile.TemporaryDirectory(prefix="medline-bench-") as tmpdir:
        docs = serialise_corpus(write_corpus(Path(tmpdir) / "corpus.txt", args.records))
    print(f"{len(docs)} documents, {args.rounds} rounds, bulk size {BULK_SIZE}", flush=True)
    loads = {variant: documents_for(variant, docs) for variant in variants}
    load(es, "nested", docs)  # untimed: the node's JIT compiles its indexing code first
    results: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    for round_no in range(1, args.rounds + 1):
        for variant in variants:
            rate, cpu = load(es, variant, loads[variant])
            results[variant].append((rate, cpu))
            print(f"  round {round_no} {variant:<12} {rate:7.0f} docs/s {cpu:6.0f} µs", flush=True)

    print()
    print(f"{'variant':<12} {'docs/s (median)':>16} {'ES µs/doc (median)':>19} {'ratio':>6}")
    # Ratios to the nested mapping's CPU, or to the first variant's when nested did not run.
    base = statistics.median(cpu for _, cpu in results.get("nested", results[variants[0]]))
    for variant, runs in results.items():
        rate = statistics.median(r for r, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(f"{variant:<12} {rate:16.0f} {cpu:19.0f} {cpu / base:6.2f}")


if __name__ == "__main__":
    main()
