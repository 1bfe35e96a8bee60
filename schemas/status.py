"""What ``medline-ingest status`` reports and the exporter turns into gauges: one snapshot of the
pipeline, gathered by :func:`worker.status.gather_status`.

A part that could not be read (Redis or Elasticsearch unreachable, no worker answered) is not an
error here: its ``error`` says why in plain words and its figures are ``None``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from schemas.ledger import ScanReport

#: Windows over which throughput is reported, in minutes.
THROUGHPUT_WINDOWS: tuple[int, ...] = (1, 5, 15)

ClusterHealth = Literal["green", "yellow", "red"]


class BrokerStatus(BaseModel):
    """Redis: the ingest queue, batches in flight, dead letters, the pause flag."""

    url: str = Field(description="Broker URL, password masked.")
    reachable: bool
    error: str | None = None
    ingest_queue: str
    ingest_queue_depth: int | None = Field(None, description="Batches waiting in the queue.")
    unacked: int | None = Field(
        None,
        description="Messages of the ingest queue delivered to a worker and not yet "
        "acknowledged (batches in hand, and batches held for a scheduled retry).",
    )
    pending: int | None = Field(
        None, description="Batches published and not yet committed (queued, running, retrying)."
    )
    pending_limit: int = Field(
        0,
        description="MEDLINE_MAX_QUEUED_BATCHES: enqueue waits while pending is at or over it "
        "(0: no limit).",
    )
    dead_letters: dict[str, int] | None = Field(None, description="Entries per dead-letter queue.")
    paused_reason: str | None = Field(
        None, description="Why workers hold off taking batches, when they do."
    )


class Throughput(BaseModel):
    """Records per second over the last 1, 5 and 15 minutes, from per-minute counters that the
    workers increment when they commit a batch."""

    indexed_per_second: dict[str, float] = Field(
        default_factory=dict, description="Records written to the index, per window ('1m', ...)."
    )
    done_per_second: dict[str, float] = Field(
        default_factory=dict,
        description="Records that reached their final place (indexed, dead-lettered, deleted, "
        "skipped as stale), per window.",
    )


class JobProgress(BaseModel):
    """A job's progress and, while it runs, an estimate of when it ends."""

    job_id: str
    state: str
    sources: list[str] = Field(default_factory=list)
    records: int = Field(description="Records enqueued (final once the state is 'running').")
    done: int
    indexed: int
    dead_lettered: int
    percent: float | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    elapsed_s: float | None = Field(None, description="Seconds since the job started.")
    rate: float | None = Field(None, description="Records done per second since it started.")
    eta_s: float | None = Field(
        None, description="Seconds until done at the job's average rate so far."
    )
    expected_duration_s: float | None = Field(
        None,
        description="Whole duration predicted once the job was a tenth done; a job that runs "
        "far beyond it is stuck or slowed down.",
    )


class WorkerInfo(BaseModel):
    """A Celery worker that answered a remote-control broadcast."""

    name: str
    concurrency: int | None = Field(None, description="Pool processes (or threads).")
    pool: str | None = None
    queues: list[str] | None = None


class WorkersStatus(BaseModel):
    reachable: bool = Field(description="Whether the broadcast could be sent at all.")
    error: str | None = None
    alive: list[WorkerInfo] = Field(default_factory=list)

    @property
    def processes(self) -> int:
        return sum(w.concurrency or 0 for w in self.alive)


class ElasticsearchStatus(BaseModel):
    url: str = Field(description="Elasticsearch URL, password masked.")
    reachable: bool
    error: str | None = None
    cluster_health: ClusterHealth | None = None
    index: str
    index_documents: int | None = Field(
        None, description="Documents in the alias's index; None if the alias does not exist yet."
    )


class Status(BaseModel):
    """One snapshot of the pipeline."""

    generated_at: datetime
    broker: BrokerStatus
    throughput: Throughput | None = None
    running_jobs: list[JobProgress] = Field(default_factory=list)
    recent_jobs: list[JobProgress] = Field(default_factory=list)
    workers: WorkersStatus
    elasticsearch: ElasticsearchStatus
    inbox: ScanReport | None = Field(
        None, description="The last inbox scan; None if none ran or Redis did not answer."
    )

    @property
    def reachable(self) -> bool:
        """Whether both services answered."""
        return self.broker.reachable and self.elasticsearch.reachable
