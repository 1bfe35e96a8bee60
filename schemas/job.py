"""Jobs: one call of the producer, and its exact accounting."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, computed_field

JobState = Literal["enqueuing", "running", "completed", "failed"]


class JobSummary(BaseModel):
    """What happened to a job's records. Once ``state`` is ``completed``,
    ``indexed + dead_lettered + deleted + skipped_stale == records`` holds.
    """

    job_id: str
    state: JobState
    sources: list[str] = Field(default_factory=list)
    records: int = Field(0, description="Records handed to the producer.")
    batches: int = Field(0, description="Batches enqueued.")
    batches_done: int = 0
    indexed: int = 0
    dead_lettered_by_queue: dict[str, int] = Field(default_factory=dict)
    deleted: int = Field(0, description="Citations deleted by DeleteCitation entries.")
    skipped_stale: int = Field(
        0,
        description="Writes skipped because the index holds a newer revision, and deletes of "
        "a citation's version skipped because it holds a later version.",
    )
    started_at: datetime | None = None
    enqueued_at: datetime | None = Field(None, description="When the producer finished.")
    finished_at: datetime | None = None
    error: str | None = Field(None, description="Why the producer failed, if it did.")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def dead_lettered(self) -> int:
        return sum(self.dead_lettered_by_queue.values())

    @computed_field  # type: ignore[prop-decorator]
    @property
    def done(self) -> int:
        """Records that reached their final place."""
        return self.indexed + self.dead_lettered + self.deleted + self.skipped_stale

    @computed_field  # type: ignore[prop-decorator]
    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or datetime.now(self.started_at.tzinfo)
        return round((end - self.started_at).total_seconds(), 3)
