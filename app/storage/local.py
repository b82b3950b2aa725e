"""Local filesystem storage: image bytes `images/{id}.{ext}`, analysis results `analysis/{name}`.

An image's bytes are renamed into place (after an fsync) before its catalog row is
committed, so a crash between the two leaves bytes nobody can see: start-up removes them
once they are older than a grace period (a live sibling worker may be about to commit).
`images/{id}.json` files are the metadata of an earlier version; start-up imports them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from app.core.formats import BY_EXTENSION
from app.core.ids import is_uuid4
from app.storage.atomic import atomic_create, atomic_write, sweep_temp_files, temp_path_for, unlink_quietly

logger = logging.getLogger("app.storage")


@dataclass(frozen=True)
class StoredFile:
    """An image's bytes found on disk."""

    image_id: str
    extension: str
    mtime: float


class LocalImageStore:
    """Image bytes on the local filesystem under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def temp_path(self) -> Path:
        return temp_path_for(self.root)

    def publish(self, temp: Path, image_id: str, extension: str) -> Path:
        final = self.content_path(image_id, extension)
        os.replace(temp, final)
        return final

    def content_path(self, image_id: str, extension: str) -> Path:
        return self.root / f"{image_id}.{extension}"

    def exists(self, image_id: str, extension: str) -> bool:
        return self.content_path(image_id, extension).exists()

    def delete(self, image_id: str, extension: str) -> None:
        unlink_quietly(self.content_path(image_id, extension))

    def files(self) -> Iterator[StoredFile]:
        for entry in os.scandir(self.root):
            stem, _, ext = entry.name.rpartition(".")
            if is_uuid4(stem) and ext in BY_EXTENSION:
                try:
                    yield StoredFile(stem, ext, entry.stat().st_mtime)
                except FileNotFoundError:
                    continue

    def legacy_metadata(self) -> Iterator[tuple[str, Path]]:
        for entry in os.scandir(self.root):
            stem, _, ext = entry.name.rpartition(".")
            if ext == "json" and is_uuid4(stem):
                yield stem, Path(entry.path)

    def recover(self) -> None:
        sweep_temp_files(self.root)


class LocalResultStore:
    """Analysis results as files under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def read(self, name: str) -> bytes | None:
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            return None

    def exists(self, name: str) -> bool:
        return (self.root / name).exists()

    def create(self, name: str, data: bytes) -> bool:
        return atomic_create(self.root / name, data)

    def replace(self, name: str, data: bytes) -> None:
        atomic_write(self.root / name, data)

    def delete_for_image(self, image_id: str) -> int:
        removed = 0
        for entry in os.scandir(self.root):
            if entry.name == f"{image_id}.json" or entry.name.startswith(f"{image_id}."):
                unlink_quietly(Path(entry.path))
                removed += 1
        return removed

    def recover(self) -> None:
        sweep_temp_files(self.root)
