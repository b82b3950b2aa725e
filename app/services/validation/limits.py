"""The bounds of an upload's structure walk, and the metadata budget every format's walk keeps.

Every bound is the setting of the same name (`app.services.validation.settings`); the walks of
`app.services.validation.{jpeg,png,webp,heif}` take them.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.errors import UndecodableImage


@dataclass(frozen=True)
class IntegrityLimits:
    """The bounds of the structure walk; each is the setting of the same name."""

    image_max_chunks: int
    png_max_text_chunks: int
    png_max_text_chunk_bytes: int
    png_max_text_bytes: int
    image_max_metadata_segments: int
    image_max_metadata_bytes: int
    jpeg_max_trailing_bytes: int
    jpeg_max_images: int


class MetadataBudget:
    """Metadata segments/chunks seen so far against the limits, and the walk's length."""

    def __init__(self, limits: IntegrityLimits, what: str) -> None:
        self.limits, self.what = limits, what
        self.steps = self.segments = self.bytes = 0

    def step(self) -> None:
        self.steps += 1
        if self.steps > self.limits.image_max_chunks:
            raise UndecodableImage(f"The {self.what} has more than {self.limits.image_max_chunks} segments")

    def add(self, length: int) -> None:
        self.segments += 1
        self.bytes += length
        if self.segments > self.limits.image_max_metadata_segments:
            limit = self.limits.image_max_metadata_segments
            raise UndecodableImage(f"The {self.what} has more than {limit} metadata segments")
        if self.bytes > self.limits.image_max_metadata_bytes:
            limit = self.limits.image_max_metadata_bytes
            raise UndecodableImage(f"The {self.what}'s metadata holds more than {limit} bytes")
