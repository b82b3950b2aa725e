"""Stored images: open, read metadata, delete, and repair what a crash left behind.

Metadata that exists but does not parse (edited by hand, or cut short by a power loss) is
rebuilt from the image bytes instead of failing the request; an image whose bytes were
published without metadata (a crash between the two renames) gets its metadata back at
start-up.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import mmap
import os

from pydantic import ValidationError

from app.core.errors import AppError, ImageNotFound
from app.core.formats import BY_EXTENSION, FORMATS
from app.core.threads import ThreadPool
from app.services.image_check import inspect_image
from app.storage.base import ImageStore, ResultStore
from app.storage.metadata import ImageMetadata, StoredImage

logger = logging.getLogger("app.images")


class ImageService:
    """Reads and deletes of published images (uploads are `IngestService`'s)."""

    def __init__(
        self, store: ImageStore, results: ResultStore, pool: ThreadPool, max_image_pixels: int
    ) -> None:
        self.store = store
        self.results = results
        self.pool = pool
        self.max_image_pixels = max_image_pixels

    def exists(self, image_id: str) -> bool:
        """True if the image is published (one `stat`: cheap enough for the event loop)."""
        return self.store.exists(image_id)

    async def get(self, image_id: str) -> StoredImage:
        """The image's metadata and the path of its bytes; ImageNotFound if there is none."""
        return await self.pool.run(self.open, image_id)

    async def metadata(self, image_id: str) -> ImageMetadata:
        """The stored metadata of an image, or ImageNotFound."""
        return await self.pool.run(self.load_metadata, image_id)

    async def delete(self, image_id: str) -> None:
        """Remove an image, its metadata and every cached analysis of it."""
        await self.pool.run(self._delete, image_id)
        logger.info("deleted image_id=%s", image_id)

    def open(self, image_id: str) -> StoredImage:
        """Blocking `get` (for worker threads)."""
        meta = self.load_metadata(image_id)
        path = self.store.content_path(image_id, meta.image_format.extension)
        if not path.exists():
            logger.error("image_id=%s has metadata but no bytes", image_id)
            raise ImageNotFound(f"Image {image_id} not found")
        return StoredImage(metadata=meta, path=path)

    def load_metadata(self, image_id: str) -> ImageMetadata:
        """Blocking `metadata` (for worker threads)."""
        raw = self.store.read_metadata(image_id)
        if raw is None:
            raise ImageNotFound(f"Image {image_id} not found")
        try:
            meta = ImageMetadata.model_validate_json(raw)
            if meta.image_id == image_id and meta.format in FORMATS:
                return meta
        except ValidationError:
            pass
        logger.warning("metadata of image_id=%s is unreadable; rebuilding it from the image", image_id)
        return self.rebuild_metadata(image_id)

    def rebuild_metadata(self, image_id: str) -> ImageMetadata:
        """Recreate an image's metadata from its bytes (the file name is lost); ImageNotFound
        if there are no valid bytes."""
        found = self.store.find_content(image_id)
        if found is None:
            raise ImageNotFound(f"Image {image_id} not found")
        path, extension = found
        fmt = BY_EXTENSION[extension]
        try:
            with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                sha256 = hashlib.sha256(data).hexdigest()
                width, height = inspect_image(data, fmt, self.max_image_pixels)
                stat = os.fstat(f.fileno())
        except (AppError, OSError, ValueError) as exc:
            logger.error("image_id=%s has no valid bytes (%s); leaving it unpublished", image_id, exc)
            raise ImageNotFound(f"Image {image_id} not found") from None
        meta = ImageMetadata.describe(
            image_id=image_id,
            filename=None,
            fmt=fmt,
            size_bytes=stat.st_size,
            width=width,
            height=height,
            sha256=sha256,
            created_at=stat.st_mtime,
        )
        self.store.write_metadata(meta)
        return meta

    def recover(self) -> None:
        """Start-up: repair storage; publish images whose metadata a crash cut off."""
        self.results.recover()
        for image_id in self.store.recover():
            logger.warning("image_id=%s was published without metadata; rebuilding it", image_id)
            with contextlib.suppress(ImageNotFound):
                self.rebuild_metadata(image_id)

    def _delete(self, image_id: str) -> None:
        meta = self.load_metadata(image_id)
        self.store.delete(image_id, meta.image_format.extension)
        self.results.delete_for_image(image_id)
