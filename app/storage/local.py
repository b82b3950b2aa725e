"""Local filesystem storage: image bytes `images/{id}.{ext}`, analysis results `analysis/{key}`.

An image's bytes are renamed into place (after an fsync) before its catalog row is
committed, so a crash between the two leaves bytes nobody can see: start-up removes them
once they are older than a grace period (a live sibling worker may be about to commit).
`images/{id}.json` files are the metadata of an earlier version; start-up imports them.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from app.core.formats import BY_EXTENSION
from app.core.ids import is_uuid4
from app.storage.atomic import (
    atomic_create,
    atomic_write,
    is_stale_temp,
    sweep_temp_files,
    temp_path_for,
    unlink_quietly,
)

logger = logging.getLogger("app.storage")

T = TypeVar("T")


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
    """Analysis results as files under `root` (see `app.storage.base.result_key` for the layout).

    `{image_id}.json` (the default analyzer's result, the seeds' contract) sits in `root`;
    every other result of an image is in its own folder `{image_id}/`, so deleting an image's
    results touches that image's files only, however many are stored. Temp files are written
    in `root` (same file system) and linked into place, so one sweep of `root` finds every
    leftover. Results of an earlier version's flat layout (`{image_id}.{analyzer}….json`)
    are moved into the folders at start-up (`recover`).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._root = str(root)  # for `exists`, on every cache hit: os.path is ~4x cheaper than pathlib
        root.mkdir(parents=True, exist_ok=True)

    def read(self, name: str) -> bytes | None:
        try:
            return (self.root / name).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def exists(self, name: str) -> bool:
        return os.path.exists(os.path.join(self._root, name))

    def path_of(self, name: str) -> Path:
        return self.root / name

    def create(self, name: str, data: bytes) -> bool:
        return self._in_folder(name, lambda path: atomic_create(path, data, self.root))

    def replace(self, name: str, data: bytes) -> None:
        self._in_folder(name, lambda path: atomic_write(path, data, self.root))

    def _in_folder(self, name: str, write: Callable[[Path], T]) -> T:
        """`write(path)`, creating the image's folder first; again if a concurrent delete of the
        image removed the folder in between (the publisher then finds the image gone)."""
        path = self.root / name
        attempts = 3
        while True:
            if path.parent != self.root:
                path.parent.mkdir(exist_ok=True)
            try:
                return write(path)
            except FileNotFoundError:
                attempts -= 1
                if path.parent == self.root or not attempts:
                    raise

    def delete_for_image(self, image_id: str) -> int:
        removed = 0
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.root / f"{image_id}.json")
            removed += 1
        folder = self.root / image_id
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return removed
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed += 1
        with contextlib.suppress(OSError):  # not empty: a publisher racing us removes its own
            os.rmdir(folder)
        return removed

    def recover(self) -> None:
        """Drop temp files of dead processes; move flat-layout results into their image's folder."""
        stale = moved = 0
        for entry in os.scandir(self.root):
            if is_stale_temp(entry.name):
                unlink_quietly(Path(entry.path))
                stale += 1
            elif (legacy := _flat_result(entry.name)) is not None:
                self._move_flat(Path(entry.path), *legacy)
                moved += 1
        if stale:
            logger.warning("removed %d stale temp file(s) from %s", stale, self.root)
        if moved:
            logger.warning("moved %d result(s) of the flat layout into per-image folders", moved)

    def _move_flat(self, path: Path, image_id: str, rest: str) -> None:
        """Crash-safe move: link under the new name (an existing one is newer and wins), then
        unlink the old; a crash in between leaves both, and the next start-up finishes."""
        target = self.root / image_id / rest
        target.parent.mkdir(exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.link(path, target)
        unlink_quietly(path)


def _flat_result(name: str) -> tuple[str, str] | None:
    """(image id, name in its folder) of a flat-layout result `{image_id}.{rest}.json`, else None."""
    image_id, dot, rest = name.partition(".")
    if dot and rest.endswith(".json") and rest != "json" and is_uuid4(image_id):
        return image_id, rest
    return None
