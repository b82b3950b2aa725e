"""Storage interfaces: original image bytes, and analysis results as JSON bytes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from app.storage.local import StoredFile


class ImageStore(Protocol):
    """Where uploaded images' bytes live (their metadata is in the catalog)."""

    def temp_path(self) -> Path:
        """A fresh temp path to stream an upload into (same filesystem as the final place)."""
        ...

    def publish(self, temp: Path, image_id: str, extension: str) -> Path:
        """Move a fully written, fsynced upload into place; its final path."""
        ...

    def content_path(self, image_id: str, extension: str) -> Path:
        """The path of the original bytes (local storage serves files directly)."""
        ...

    def exists(self, image_id: str, extension: str) -> bool:
        """True if the bytes are there."""
        ...

    def delete(self, image_id: str, extension: str) -> None:
        """Remove an image's bytes (no error if they are gone)."""
        ...

    def files(self) -> Iterator[StoredFile]:
        """Every image's bytes on disk."""
        ...

    def legacy_metadata(self) -> Iterator[tuple[str, Path]]:
        """Metadata files an earlier version wrote beside the bytes: (image id, path)."""
        ...

    def recover(self) -> None:
        """Start-up repair after a crash: drop temp files of dead processes."""
        ...


def result_key(image_id: str, variant: str | None = None) -> str:
    """The key of one result of an image: `{image_id}.json` for the default analyzer (the
    seeds' contract), `{image_id}/{variant}.json` for any other (`variant`: the analyzer's
    name, and a hash of non-default params). Every key of an image starts with its id, and
    no other image's key does (ids have one length), so a store can delete by that prefix."""
    return f"{image_id}.json" if variant is None else f"{image_id}/{variant}.json"


class ResultStore(Protocol):
    """Where analysis results are cached, as the exact response bytes, under `result_key`s."""

    def read(self, name: str) -> bytes | None:
        """The stored bytes under `name`, or None."""
        ...

    def exists(self, name: str) -> bool:
        """True if a result is stored under `name`."""
        ...

    def path_of(self, name: str) -> Path:
        """The file that holds (or would hold) `name`, for readers that want a path."""
        ...

    def create(self, name: str, data: bytes) -> bool:
        """Store `data` unless something is there already; True if this call stored it."""
        ...

    def replace(self, name: str, data: bytes) -> None:
        """Store `data`, replacing whatever is there (used to repair a corrupt entry)."""
        ...

    def delete_for_image(self, image_id: str) -> int:
        """Remove every result of one image (the keys that start with its id), at a cost that
        does not grow with the other images' results; returns how many."""
        ...

    def recover(self) -> None:
        """Start-up repair after a crash: drop temp files (and bring an older layout up to date)."""
        ...
