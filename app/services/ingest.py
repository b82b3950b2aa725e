"""Upload use case: stream a multipart body to disk, validate it, publish it under a UUID4.

The request body goes chunk by chunk into a temp file beside its final place (see
`multipart.receive_form`, which also hashes it); then, in one worker-thread hop, the file
is checked by Pillow through one read-only mmap, fsynced, its metadata written and both
renamed into place. Any failure, or a client
hang-up, removes the temp file: nothing is left in `data/`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import mmap
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from io import FileIO
from pathlib import Path
from typing import Any

from app.core.config import Settings
from app.core.errors import (
    AppError,
    EmptyFile,
    IdempotencyMismatch,
    ImageNotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from app.core.formats import BY_EXTENSION, FORMATS, SNIFF_BYTES, ImageFormat, accepted_format
from app.core.ids import new_image_id
from app.core.threads import ThreadPool
from app.core.units import human_size
from app.services.idempotency import IdempotencyStore, StoredResponse
from app.services.image_check import inspect_image
from app.services.multipart import FormLimits, ReceivedFile, ReceivedForm, receive_form, require_file
from app.storage.atomic import unlink_quietly
from app.storage.base import ImageStore, ResultStore

logger = logging.getLogger("app.upload")


@dataclass(frozen=True)
class UploadOutcome:
    """What an upload produced: the response body (exact bytes) and where the image lives."""

    image_id: str
    body: bytes
    location: str
    replayed: bool = False


@dataclass(frozen=True)
class ImageContent:
    """Where to read an image's original bytes from."""

    path: Path
    media_type: str
    etag: str
    size: int


def image_location(image_id: str) -> str:
    """The canonical URL path of an image's metadata."""
    return f"/api/v1/images/{image_id}"


def _utc_now(timestamp: float | None = None) -> str:
    moment = datetime.now(UTC) if timestamp is None else datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _metadata_body(
    image_id: str,
    filename: str | None,
    fmt: ImageFormat,
    size: int,
    width: int,
    height: int,
    sha256: str,
    created_at: str,
) -> bytes:
    """The metadata JSON of an image, which is also its upload response body."""
    metadata = {
        "image_id": image_id,
        "filename": filename,
        "content_type": fmt.mime,
        "format": fmt.name,
        "size_bytes": size,
        "size": human_size(size),
        "width": width,
        "height": height,
        "sha256": sha256,
        "created_at": created_at,
    }
    return json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode()


class ImageService:
    """Upload, read and delete images."""

    def __init__(
        self,
        settings: Settings,
        images: ImageStore,
        results: ResultStore,
        idempotency: IdempotencyStore,
        pool: ThreadPool,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.images = images
        self.results = results
        self.idempotency = idempotency
        self.limits = FormLimits(
            max_file_bytes=settings.max_upload_bytes,
            max_body_bytes=settings.max_request_body_bytes,
            max_parts=settings.max_form_parts,
            max_field_bytes=settings.max_form_field_bytes,
            allowed_formats=frozenset(settings.allowed_formats),
        )

    async def receive(
        self,
        *,
        content_type: str | None,
        content_length: int | None,
        chunks: AsyncIterator[bytes],
        file_field: str = "file",
    ) -> ReceivedForm:
        """Stream a multipart body; its file part (if any) lands in a temp file.

        The caller owns the result and must `discard` it.
        """
        if content_length is not None and content_length > self.limits.max_body_bytes:
            raise PayloadTooLarge(
                f"Content-Length {content_length} exceeds the limit of {self.limits.max_body_bytes} bytes"
            )
        return await receive_form(
            content_type=content_type,
            chunks=chunks,
            file_field=file_field,
            new_temp=self.images.temp_path,
            limits=self.limits,
        )

    @staticmethod
    def discard(received: ReceivedFile | None) -> None:
        """Close and remove a received file that was not published."""
        if received is None:
            return
        if received.file is not None:
            received.file.close()
        unlink_quietly(received.path)

    async def upload(
        self,
        *,
        content_type: str | None,
        content_length: int | None,
        chunks: AsyncIterator[bytes],
        idempotency_key: str | None = None,
        scope: str = "",
        file_field: str = "file",
    ) -> UploadOutcome:
        """Receive one image from a multipart body and publish it."""
        record_id = None
        if idempotency_key is not None:
            record_id = self.idempotency.record_id(idempotency_key, scope)
            self.idempotency.claim(record_id)
        try:
            form = await self.receive(
                content_type=content_type,
                content_length=content_length,
                chunks=chunks,
                file_field=file_field,
            )
            received = require_file(form, file_field)
            try:
                return await self.pool.run(self._finish, received, record_id)
            finally:
                self.discard(received)
        finally:
            if record_id is not None:
                self.idempotency.release(record_id)

    async def check(self, received: ReceivedFile) -> tuple[ImageFormat, int, int]:
        """Validate a received file as an image without publishing it: (format, width, height)."""
        return await self.pool.run(self._check, received)

    def _check(self, received: ReceivedFile) -> tuple[ImageFormat, int, int]:
        if received.size == 0:
            raise EmptyFile()
        fmt = received.format
        if fmt is None or received.file is None:
            raise UnsupportedMediaType()
        with mmap.mmap(received.file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            width, height = inspect_image(
                data, fmt, self.settings.max_image_pixels, self.settings.upload_decode_check
            )
        return fmt, width, height

    async def ingest_file(self, path: Path, filename: str | None = None) -> UploadOutcome:
        """Publish a file already written under `temp_path()` (e.g. a URL download) as an image."""
        try:
            received = await self.pool.run(self._describe_file, path, filename)
        except BaseException:
            unlink_quietly(path)
            raise
        try:
            return await self.pool.run(self._finish, received, None)
        finally:
            self.discard(received)

    def _describe_file(self, path: Path, filename: str | None) -> ReceivedFile:
        file = FileIO(path, "rb+")
        try:
            size = os.fstat(file.fileno()).st_size
            fmt = accepted_format(file.read(SNIFF_BYTES), self.limits.allowed_formats)
            file.seek(0)
            sha256 = hashlib.file_digest(file, "sha256").hexdigest()
        except BaseException:
            file.close()
            raise
        return ReceivedFile(
            path=path,
            field_name="url",
            filename=filename,
            declared_type=None,
            size=size,
            format=fmt,
            file=file,
            sha256=sha256,
        )

    def _finish(self, received: ReceivedFile, record_id: str | None) -> UploadOutcome:
        """Worker thread, one hop: replay or validate, fsync, publish."""
        sha256 = received.sha256
        if record_id is not None and received.size:
            stored = self.idempotency.load(record_id)
            if stored is not None:
                return self._replay(stored, sha256)
        fmt, width, height = self._check(received)
        assert received.file is not None
        os.fsync(received.file.fileno())
        image_id = new_image_id()
        body = _metadata_body(
            image_id, received.filename, fmt, received.size, width, height, sha256, _utc_now()
        )
        self.images.publish(received.path, image_id, fmt.extension, body)
        location = image_location(image_id)
        if record_id is not None:
            self.idempotency.save(record_id, StoredResponse(sha256, 201, body, location, time.time()))
        logger.info(
            "upload image_id=%s size=%d type=%s %dx%d filename=%r",
            image_id,
            received.size,
            fmt.mime,
            width,
            height,
            received.filename,
        )
        return UploadOutcome(image_id, body, location)

    def _replay(self, stored: StoredResponse, sha256: str) -> UploadOutcome:
        if stored.fingerprint != sha256:
            raise IdempotencyMismatch()
        image_id = json.loads(stored.body)["image_id"]
        logger.info("upload replayed image_id=%s (Idempotency-Key)", image_id)
        return UploadOutcome(image_id, stored.body, stored.location or image_location(image_id), True)

    def load_metadata(self, image_id: str) -> dict[str, Any]:
        """The stored metadata of an image, or ImageNotFound (blocking: call from a thread).

        Metadata that exists but does not parse (edited by hand, or cut short by a power
        loss) is rebuilt from the image bytes instead of failing the request.
        """
        raw = self.images.read_metadata(image_id)
        if raw is None:
            raise ImageNotFound(f"Image {image_id} not found")
        try:
            meta = json.loads(raw)
            if isinstance(meta, dict) and meta.get("format") in FORMATS and meta.get("image_id") == image_id:
                return meta
        except ValueError:
            pass
        logger.warning("metadata of image_id=%s is unreadable; rebuilding it from the image", image_id)
        return self.rebuild_metadata(image_id)

    def rebuild_metadata(self, image_id: str) -> dict[str, Any]:
        """Recreate an image's metadata from its bytes (the file name is lost); ImageNotFound
        if there are no valid bytes."""
        found = self.images.find_content(image_id)
        if found is None:
            raise ImageNotFound(f"Image {image_id} not found")
        path, extension = found
        fmt = BY_EXTENSION[extension]
        try:
            with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                sha256 = hashlib.sha256(data).hexdigest()
                width, height = inspect_image(data, fmt, self.settings.max_image_pixels)
                stat = os.fstat(f.fileno())
        except (AppError, OSError, ValueError) as exc:
            logger.error("image_id=%s has no valid bytes (%s); leaving it unpublished", image_id, exc)
            raise ImageNotFound(f"Image {image_id} not found") from None
        body = _metadata_body(
            image_id, None, fmt, stat.st_size, width, height, sha256, _utc_now(stat.st_mtime)
        )
        self.images.write_metadata(image_id, body)
        meta: dict[str, Any] = json.loads(body)
        return meta

    def recover(self) -> None:
        """Start-up: repair storage; publish images whose metadata a crash cut off."""
        for image_id in self.images.recover():
            logger.warning("image_id=%s was published without metadata; rebuilding it", image_id)
            with contextlib.suppress(ImageNotFound):
                self.rebuild_metadata(image_id)

    async def metadata(self, image_id: str) -> dict[str, Any]:
        """The stored metadata of an image, or ImageNotFound."""
        return await self.pool.run(self.load_metadata, image_id)

    async def content(self, image_id: str) -> ImageContent:
        """Where the original bytes of an image are, with their type and ETag."""
        return await self.pool.run(self._content, image_id)

    def _content(self, image_id: str) -> ImageContent:
        meta = self.load_metadata(image_id)
        fmt = FORMATS[str(meta["format"])]
        path = self.images.content_path(image_id, fmt.extension)
        if not path.exists():
            logger.error("image_id=%s has metadata but no bytes", image_id)
            raise ImageNotFound(f"Image {image_id} not found")
        return ImageContent(
            path=path,
            media_type=fmt.mime,
            etag=f'"{meta["sha256"]}"',
            size=int(str(meta["size_bytes"])),
        )

    async def delete(self, image_id: str) -> None:
        """Remove an image, its metadata and every cached analysis of it."""
        await self.pool.run(self._delete, image_id)
        logger.info("deleted image_id=%s", image_id)

    def _delete(self, image_id: str) -> None:
        fmt = FORMATS[str(self.load_metadata(image_id)["format"])]
        self.images.delete(image_id, fmt.extension)
        self.results.delete_for_image(image_id)
