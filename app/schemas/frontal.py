"""Seed 004 schemas: the facial contour job request and its status."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Point(BaseModel):
    """A landmark in image pixels."""

    x: float
    y: float


class CropSubmit(BaseModel):
    """An image (base64 or a base64 data URL), optionally with 68 landmarks or a label image."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(description="The facial image, base64 or `data:image/...;base64,...`")
    landmarks: list[Point] | None = Field(
        default=None,
        max_length=1000,
        description="68 points (iBUG 300-W order) in image pixels: skips detection",
    )
    segmentation_map: str | None = Field(
        default=None,
        description="A label image (PNG, one channel, same size, 0 = background, <= 256 labels) as base64: "
        "contours are traced from it",
    )


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
