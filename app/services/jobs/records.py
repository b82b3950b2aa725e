"""The records of the job queue: a job's status, its error and its snapshot."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

INTERNAL_ERROR_DETAIL = "The job failed because of an internal error"


class JobStatus(StrEnum):
    """The life of a job: pending -> running -> completed | failed."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


FINISHED = frozenset({JobStatus.COMPLETED, JobStatus.FAILED})


class JobError(BaseModel):
    """Why a job failed: a stable machine code and a human-readable detail."""

    model_config = ConfigDict(frozen=True)

    code: str
    detail: str


class Job(BaseModel):
    """A snapshot of one job (immutable; a transition makes a new snapshot)."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    status: JobStatus
    created_at: datetime
    updated_at: datetime
    error: JobError | None = None
    content_key: str
    # Who submitted it (a principal id), and the credit set aside for it (if metered).
    owner: str = "anonymous"
    hold_id: str | None = None
    # The process (host:pid) that runs it; another worker adopts it only once that one is gone.
    worker: str | None = None
    # Born completed from the result of a near-duplicate image's job (perceptual reuse): that
    # job's id and the PDQ distance between the two images
    reused_from: str | None = None
    reused_distance: int | None = None
