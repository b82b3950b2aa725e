"""`ImageMetadata`: what the service knows about a stored image, in one typed record.

The same record is stored in the image catalog, returned by an upload and by the metadata
route; its JSON (compact, fields in this order) is byte-stable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.core.formats import FORMATS, ImageFormat
from app.core.units import human_size


def utc_timestamp(moment: float | None = None) -> str:
    """An ISO 8601 UTC timestamp with microseconds (`2026-11-23T17:00:00.000000Z`)."""
    when = datetime.now(UTC) if moment is None else datetime.fromtimestamp(moment, UTC)
    return when.isoformat(timespec="microseconds")[:-6] + "Z"  # "+00:00" off; strftime is ~2 µs slower


class RemovedTrailer(BaseModel):
    """What was cut off after a phone photo's JPEG, as the file itself declared it."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["motion_photo", "micro_video", "samsung_sef"] = Field(
        description="The declaration: Google Motion Photo (XMP Container:Directory), MVIMG "
        "(XMP GCamera:MicroVideoOffset) or Samsung's SEF trailer (SEFH/SEFT directory)"
    )
    removed_bytes: int = Field(examples=[2481337], description="Bytes removed from the end of the upload")
    contents: list[str] = Field(
        examples=[["MotionPhoto:video/mp4"]],
        description="What they held: Container items as Semantic:Mime, or SEF block names",
    )


class ImageMetadata(BaseModel):
    """Metadata of a stored image (also the upload response)."""

    model_config = ConfigDict(frozen=True)

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
    upright_width: int = Field(examples=[1080], description="Width as displayed (EXIF orientation applied)")
    upright_height: int = Field(examples=[1920], description="Height as displayed (EXIF orientation applied)")
    trailer: RemovedTrailer | None = Field(
        default=None, description="A declared trailer (Motion Photo video, Samsung SEF data) not stored"
    )
    perceptual_hash: str | None = Field(
        default=None,
        examples=["f8f8e0c0" * 8],
        description="PDQ hash of the pixels (64 hex digits; null: not computed, or too flat to say)",
    )

    @model_validator(mode="before")
    @classmethod
    def _upright_defaults(cls, values: Any) -> Any:
        """Records from before upright sizes were kept: the stored size."""
        if isinstance(values, dict):
            for upright, stored in (("upright_width", "width"), ("upright_height", "height")):
                if values.get(upright) is None and stored in values:
                    values = {**values, upright: values[stored]}
        return values

    @classmethod
    def describe(
        cls,
        *,
        image_id: str,
        filename: str | None,
        fmt: ImageFormat,
        size_bytes: int,
        width: int,
        height: int,
        sha256: str,
        created_at: float | None = None,
        upright: tuple[int, int] | None = None,
        trailer: RemovedTrailer | None = None,
        perceptual_hash: str | None = None,
    ) -> ImageMetadata:
        """The metadata of an image with these properties (`created_at`: a Unix time, or now;
        `upright`: the displayed size, if not the stored one)."""
        return cls(
            image_id=image_id,
            filename=filename,
            content_type=fmt.mime,
            format=fmt.name,
            size_bytes=size_bytes,
            size=human_size(size_bytes),
            width=width,
            height=height,
            sha256=sha256,
            created_at=utc_timestamp(created_at),
            upright_width=(upright or (width, height))[0],
            upright_height=(upright or (width, height))[1],
            trailer=trailer,
            perceptual_hash=perceptual_hash,
        )

    @property
    def image_format(self) -> ImageFormat:
        """The stored format (KeyError for a format this build does not know)."""
        return FORMATS[self.format]

    @property
    def etag(self) -> str:
        """A strong HTTP entity tag of the bytes: their SHA-256."""
        return f'"{self.sha256}"'

    def to_json(self) -> bytes:
        """The record's canonical JSON bytes (stored, and sent as a response)."""
        return self.model_dump_json().encode()


@dataclass(frozen=True)
class StoredImage:
    """A published image: its metadata, its owner (a principal id) and where its bytes are."""

    metadata: ImageMetadata
    owner: str
    path: Path
