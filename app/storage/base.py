"""Storage interfaces: original image bytes + metadata, and analysis results as JSON bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from app.storage.metadata import ImageMetadata


class ImageStore(Protocol):
    """Where uploaded images and their metadata live."""

    def temp_path(self) -> Path:
        """A fresh temp path to stream an upload into (same filesystem as the final place)."""
        ...

    def publish(self, temp: Path, metadata: ImageMetadata) -> None:
        """Move a fully written, fsynced upload into place and store its metadata."""
        ...

    def read_metadata(self, image_id: str) -> bytes | None:
        """The metadata JSON of an image, or None if there is no such image."""
        ...

    def exists(self, image_id: str) -> bool:
        """True if the image is published."""
        ...

    def write_metadata(self, metadata: ImageMetadata) -> None:
        """Store (or replace) an image's metadata atomically."""
        ...

    def find_content(self, image_id: str) -> tuple[Path, str] | None:
        """The path and extension of an image's bytes, looked up without its metadata."""
        ...

    def content_path(self, image_id: str, extension: str) -> Path:
        """The path of the original bytes (local storage serves files directly)."""
        ...

    def delete(self, image_id: str, extension: str) -> bool:
        """Remove an image and its metadata; True if it existed."""
        ...

    def recover(self) -> list[str]:
        """Start-up repair after a crash: drop temp files; return the ids of images whose
        bytes were published but whose metadata was not (for the caller to rebuild)."""
        ...


class ResultStore(Protocol):
    """Where analysis results are cached, as the exact response bytes."""

    def read(self, name: str) -> bytes | None:
        """The stored bytes under `name`, or None."""
        ...

    def exists(self, name: str) -> bool:
        """True if a result is stored under `name`."""
        ...

    def create(self, name: str, data: bytes) -> bool:
        """Store `data` unless something is there already; True if this call stored it."""
        ...

    def replace(self, name: str, data: bytes) -> None:
        """Store `data`, replacing whatever is there (used to repair a corrupt entry)."""
        ...

    def delete_for_image(self, image_id: str) -> int:
        """Remove every result of one image; returns how many."""
        ...

    def recover(self) -> None:
        """Start-up repair after a crash: drop temp files."""
        ...
