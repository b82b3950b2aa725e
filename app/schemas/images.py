"""Image schemas: the upload response and stored metadata."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ImageRead(BaseModel):
    """Metadata of a stored image (also the upload response)."""

    image_id: str = Field(examples=["3fa85f64-5717-4562-b3fc-2c963f66afa6"])
    filename: str | None = Field(examples=["face.jpg"], description="Client file name (sanitized)")
    content_type: str = Field(examples=["image/jpeg"], description="Type found in the bytes")
    format: str = Field(examples=["jpeg"])
    size_bytes: int = Field(examples=[1520435])
    size: str = Field(examples=["1.45 MB"], description="Human-readable size")
    width: int = Field(examples=[1920])
    height: int = Field(examples=[1080])
    sha256: str = Field(examples=["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"])
    created_at: str = Field(examples=["2026-11-23T17:00:00.000000Z"])
