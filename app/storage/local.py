"""Local filesystem storage: `images/{id}.{ext}` + `images/{id}.json`, `analysis/{name}`.

An image is visible once its metadata file exists. Publication renames the image first
and the metadata second, so a crash between the two leaves a whole image without
metadata; `recover` reports such images and the image service rebuilds their metadata.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from app.core.formats import BY_EXTENSION
from app.core.ids import is_uuid4
from app.storage.atomic import (
    atomic_create,
    atomic_write,
    sweep_temp_files,
    temp_path_for,
    unlink_quietly,
    write_and_sync,
)
from app.storage.metadata import ImageMetadata

logger = logging.getLogger("app.storage")


class LocalImageStore:
    """Images on the local filesystem under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _meta_path(self, image_id: str) -> Path:
        return self.root / f"{image_id}.json"

    def temp_path(self) -> Path:
        return temp_path_for(self.root)

    def publish(self, temp: Path, metadata: ImageMetadata) -> None:
        meta_tmp = temp_path_for(self.root)
        image_id = metadata.image_id
        try:
            write_and_sync(meta_tmp, metadata.to_json())
            os.replace(temp, self.content_path(image_id, metadata.image_format.extension))
            os.replace(meta_tmp, self._meta_path(image_id))
        except BaseException:
            unlink_quietly(meta_tmp)
            raise

    def read_metadata(self, image_id: str) -> bytes | None:
        try:
            return self._meta_path(image_id).read_bytes()
        except FileNotFoundError:
            return None

    def exists(self, image_id: str) -> bool:
        return self._meta_path(image_id).exists()

    def write_metadata(self, metadata: ImageMetadata) -> None:
        atomic_write(self._meta_path(metadata.image_id), metadata.to_json())

    def find_content(self, image_id: str) -> tuple[Path, str] | None:
        for extension in BY_EXTENSION:
            path = self.content_path(image_id, extension)
            if path.exists():
                return path, extension
        return None

    def content_path(self, image_id: str, extension: str) -> Path:
        return self.root / f"{image_id}.{extension}"

    def delete(self, image_id: str, extension: str) -> bool:
        meta = self._meta_path(image_id)
        existed = meta.exists()
        # Metadata first: the image stops being visible before its bytes go.
        unlink_quietly(meta)
        unlink_quietly(self.content_path(image_id, extension))
        return existed

    def recover(self) -> list[str]:
        sweep_temp_files(self.root)
        with_meta: set[str] = set()
        contents: set[str] = set()
        for entry in os.scandir(self.root):
            stem, _, ext = entry.name.rpartition(".")
            if not is_uuid4(stem):
                continue  # not ours (temp files were swept above)
            if ext == "json":
                with_meta.add(stem)
            elif ext in BY_EXTENSION:
                contents.add(stem)
        return sorted(contents - with_meta)


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
