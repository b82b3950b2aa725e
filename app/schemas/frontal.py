"""Seed 004 schemas: the facial contour job request and its status."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.services.jobs.contours import ContourJobRequest, Point

__all__ = ["ContourJobRequest", "JobAccepted", "JobReusedFrom", "JobStatusRead", "Point"]


class JobReusedFrom(BaseModel):
    """The earlier job (of a near-duplicate image) whose result answers, and the PDQ distance."""

    job_id: str
    distance: int = Field(examples=[6])


class JobAccepted(BaseModel):
    """A job was accepted (persisted: it survives a restart)."""

    job_id: str = Field(examples=["3fa85f64-5717-4562-b3fc-2c963f66afa6"])
    status: str = Field(examples=["pending"])


class JobStatusRead(BaseModel):
    """Where a job is; `result` is the SVG document, base64, once completed."""

    job_id: str
    status: str = Field(examples=["completed"])
    result: str | None = Field(default=None, description="base64 of the SVG document")
    error: str | None = Field(default=None, examples=[None])
    error_code: str | None = Field(default=None, examples=["no_face_detected"])
    reused_from: JobReusedFrom | None = Field(
        default=None,
        description="Set when a near-duplicate image's earlier job answered (perceptual reuse)",
        examples=[None],
    )
