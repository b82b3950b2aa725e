"""Ingest: stream a multipart body (or a URL download) to disk, validate it, publish it under a UUID4.

The request body goes chunk by chunk into a temp file beside its final place (see
`multipart.receive_form`, which also hashes it); then, in one worker-thread hop, the file
is checked from the copy a small file keeps in memory (UPLOAD_MEMORY_COPY_BYTES) or else
through one read-only mmap (a trailer the photo declares, such as a Motion Photo's video, is
cut off and the kept bytes' hash resumed from the streaming hash),
fsynced and renamed into place; then its catalog row (metadata and owner) is committed (on
SQLite without an Idempotency-Key, from the same worker thread: one hop per upload), and
only then does the image exist. Any failure, or a client hang-up, removes the file: nothing
is left in `data/`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import mmap
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from io import FileIO
from pathlib import Path
from urllib.parse import urlsplit

from PIL import Image
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import metrics
from app.core.errors import (
    EmptyFile,
    IdempotencyMismatch,
    ImageNotFound,
    PayloadTooLarge,
    UndecodableImage,
    UnsupportedMediaType,
)
from app.core.formats import SNIFF_BYTES, ImageFormat, accepted_format
from app.core.ids import new_image_id
from app.core.threads import ThreadPool
from app.services.accounts.principals import Principal
from app.services.fetch.download import download
from app.services.images.catalog import ImageService
from app.services.images.idempotency import Claim, IdempotencyStore
from app.services.images.perceptual import MIN_QUALITY, hash_image
from app.services.images.settings import IngestSettings
from app.services.multipart.reader import (
    FormLimits,
    ReceivedFile,
    ReceivedForm,
    receive_form,
    require_file,
    sanitize_filename,
)
from app.services.validation.checks import ImageInfo, examine_image, read_header
from app.services.validation.jpeg import check_jpeg_structure
from app.services.validation.jpeg_trailer import Trailer
from app.storage.atomic import unlink_quietly
from app.storage.metadata import ImageMetadata, RemovedTrailer, StoredImage

logger = logging.getLogger("app.upload")


@dataclass(frozen=True)
class UploadOutcome:
    """The image an upload published, and whether it is a replay of an earlier upload."""

    metadata: ImageMetadata
    replayed: bool = False

    @property
    def image_id(self) -> str:
        return self.metadata.image_id


class IngestService:
    """Receive, validate and publish images: multipart uploads and URL downloads."""

    def __init__(
        self,
        settings: IngestSettings,
        images: ImageService,
        idempotency: IdempotencyStore,
        pool: ThreadPool,
        published: Callable[[StoredImage], None] | None = None,
    ) -> None:
        self.settings = settings
        self.published = published  # told of each new image (a HEIC's rendition starts)
        self.images = images
        self.store = images.store
        self.idempotency = idempotency
        self.pool = pool
        self.url_policy = settings.url_policy
        self.integrity = settings.integrity
        self.hash_at_upload = settings.perceptual_hash_at_upload and settings.perceptual_reuse_distance > 0
        self.limits = FormLimits(
            max_file_bytes=settings.max_upload_bytes + settings.max_declared_trailer_bytes,
            max_body_bytes=settings.max_request_body_bytes,
            max_parts=settings.max_form_parts,
            max_field_bytes=settings.max_form_field_bytes,
            max_preamble_bytes=settings.max_form_preamble_bytes,
            max_padding_bytes=settings.max_form_padding_bytes,
            allowed_formats=settings.allowed_formats,
            keep_bytes=settings.upload_memory_copy_bytes,
            kept_budget=settings.upload_memory_budget_bytes,
        )

    async def receive(
        self,
        *,
        content_type: str | None,
        content_length: int | None,
        chunks: AsyncIterator[bytes],
        file_field: str = "file",
        on_file: Callable[[], None] | None = None,
    ) -> ReceivedForm:
        """Stream a multipart body; its file part (if any) lands in a temp file (`on_file`, if
        given, is called before the first byte of it is read and may refuse the form).

        The caller owns the result and must `discard` its file.
        """
        if content_length is not None and content_length > self.limits.max_body_bytes:
            raise PayloadTooLarge(
                f"Content-Length {content_length} exceeds the limit of {self.limits.max_body_bytes} bytes"
            )
        return await receive_form(
            content_type=content_type,
            chunks=chunks,
            file_field=file_field,
            new_temp=self.store.temp_path,
            limits=self.limits,
            on_file=on_file,
            content_length=content_length,
        )

    @staticmethod
    def discard(received: ReceivedFile | None) -> None:
        """Close and remove a received file that was not published."""
        if received is None or received.placed:
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
        owner: Principal,
        idempotency_key: str | None = None,
        file_field: str = "file",
    ) -> UploadOutcome:
        """Receive one image from a multipart body and publish it, owned by `owner`."""
        claim = None
        if idempotency_key is not None:
            claim = await self.idempotency.claim(idempotency_key, owner.id)
        try:
            form = await self.receive(
                content_type=content_type,
                content_length=content_length,
                chunks=chunks,
                file_field=file_field,
            )
            received = require_file(form, file_field)
            try:
                return await self._publish(received, owner, claim)
            finally:
                self.discard(received)
        finally:
            if claim is not None:
                await self.idempotency.release(claim)

    async def check(self, received: ReceivedFile) -> tuple[ImageFormat, int, int]:
        """Validate a received file as an image without publishing it: (format, width, height)."""
        fmt, info = await self.pool.run(self._check, received)
        return fmt, info.width, info.height

    async def ingest_url(self, url: str, owner: Principal) -> UploadOutcome:
        """Download `url` under the fetch policy (SSRF-safe, size- and time-bounded) and publish it."""
        dest = self.store.temp_path()
        try:
            await download(url, dest, self.url_policy)
            name = sanitize_filename(urlsplit(url).path.rsplit("/", 1)[-1] or None)
            return await self.ingest_file(dest, owner, name)
        finally:
            unlink_quietly(dest)  # a published image was renamed away; anything else goes

    async def ingest_file(self, path: Path, owner: Principal, filename: str | None = None) -> UploadOutcome:
        """Publish a file already written under the store's `temp_path()` as an image."""
        try:
            received = await self.pool.run(self._describe_file, path, filename)
        except BaseException:
            unlink_quietly(path)
            raise
        try:
            return await self._publish(received, owner, None)
        finally:
            self.discard(received)

    async def _publish(self, received: ReceivedFile, owner: Principal, claim: Claim | None) -> UploadOutcome:
        """Bytes into place (worker thread), then the catalog row (with the Idempotency-Key's
        record, in one transaction): the image exists once both are."""
        also: Callable[[AsyncSession], Awaitable[None]] | None = None
        fingerprint = received.sha256  # of the bytes as sent (a cut-off trailer changes `sha256`)
        if claim is not None and received.size:
            replayed = await self._replay(claim, fingerprint, owner)
            if replayed is not None:
                return replayed
        if claim is None and self.images.commits_in_thread:  # one hop: place and commit the row
            # A cancelled caller waits for the thread; its row is committed, so the bytes stay.
            meta, path = await self.pool.run(self._place_and_register, received, owner.id)
            self.images.registered(meta, owner.id, path)
        else:
            meta, path = await self.pool.run(self._place, received)
            if self.images.objects is not None:  # object storage: put now; `discard` drops the temp
                path = await self.images.put_object(received.path, meta)
            if claim is not None:

                async def also(session: AsyncSession) -> None:
                    await self.idempotency.record(session, claim, fingerprint, meta.image_id)

            try:
                await self.images.register(meta, owner.id, path, also)
            except asyncio.CancelledError:
                raise  # the client left; its row may still be committed, so the bytes stay
            except BaseException:
                await self.images.unpublish(meta, path)
                raise
        metrics.UPLOAD_BYTES.inc(meta.size_bytes)
        logger.info(
            "upload image_id=%s size=%d type=%s %dx%d filename=%r",
            meta.image_id,
            received.size,
            meta.content_type,
            meta.width,
            meta.height,
            received.filename,
        )
        if meta.trailer is not None:
            logger.info(
                "upload image_id=%s: %d bytes of declared trailer not stored (%s: %s)",
                meta.image_id,
                meta.trailer.removed_bytes,
                meta.trailer.kind,
                ", ".join(meta.trailer.contents),
            )
        if self.published is not None:
            self.published(StoredImage(meta, owner.id, path))
        return UploadOutcome(meta)

    def _check(self, received: ReceivedFile, cut: bool = False) -> tuple[ImageFormat, ImageInfo]:
        """Validate (worker thread); with `cut`, a declared trailer is cut off the file and
        `size` and `sha256` become those of the image that remains."""
        if received.size == 0:
            raise EmptyFile()
        fmt = received.format
        if fmt is None or received.file is None:
            raise UnsupportedMediaType()
        if received.contents is not None:
            info = self._examine(received, received.contents, fmt, cut)
        else:
            with mmap.mmap(received.file.fileno(), 0, access=mmap.ACCESS_READ) as data:
                info = self._examine(received, data, fmt, cut)
        if cut and info.trailer is not None:
            os.ftruncate(received.file.fileno(), info.trailer.start)
            received.size = info.trailer.start
        return fmt, info

    def _examine(
        self, received: ReceivedFile, data: bytes | mmap.mmap, fmt: ImageFormat, cut: bool
    ) -> ImageInfo:
        """The checks of `_check` on the file's contents `data`."""
        pixels, decode = self.settings.max_image_pixels, self.settings.upload_decode_check
        if received.size > self.settings.max_upload_bytes:  # one walk finds the trailer and checks
            info = read_header(data, fmt, pixels, self._check_image_fits(data, fmt), decode)
        else:
            info = examine_image(data, fmt, pixels, decode, self.integrity)
        if cut and info.trailer is not None:
            received.sha256 = received.prefix_sha256(data, info.trailer.start)
        return info

    def _check_image_fits(self, data: bytes | mmap.mmap, fmt: ImageFormat) -> Trailer:
        """PayloadTooLarge unless a file over MAX_UPLOAD_BYTES is a JPEG whose declared trailer
        (cut off before it is stored) brings the image within it; that trailer (the JPEG's
        whole structure walk has passed)."""
        limit = self.settings.max_upload_bytes
        if fmt.pillow == "JPEG":
            try:
                trailer = check_jpeg_structure(data, self.integrity)
            except UndecodableImage:
                trailer = None
            if trailer is not None and trailer.start <= limit:
                return trailer
        raise PayloadTooLarge(f"The file exceeds the limit of {limit} bytes")

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

    def _place(self, received: ReceivedFile) -> tuple[ImageMetadata, Path]:
        """Worker thread, one hop: validate, fsync, rename into place, close."""
        sent = received.size
        fmt, info = self._check(received, cut=True)
        assert received.file is not None
        perceptual = self._perceptual_hash(received.file, fmt)
        os.fsync(received.file.fileno())
        trailer = None
        if info.trailer is not None:
            removed = {"kind": info.trailer.kind, "contents": info.trailer.contents}
            trailer = RemovedTrailer.model_validate({**removed, "removed_bytes": sent - received.size})
        meta = ImageMetadata.describe(
            image_id=new_image_id(),
            filename=received.filename,
            fmt=fmt,
            size_bytes=received.size,
            width=info.width,
            height=info.height,
            sha256=received.sha256,
            upright=(info.upright_width, info.upright_height),
            trailer=trailer,
            perceptual_hash=perceptual,
        )
        if self.images.objects is not None:
            received.file.close()  # here, not on the event loop; the temp file is put next
            return meta, received.path
        path = self.store.publish(received.path, meta.image_id, fmt.extension)
        received.file.close()  # here, not on the event loop
        received.placed = True
        return meta, path

    def _place_and_register(self, received: ReceivedFile, owner: str) -> tuple[ImageMetadata, Path]:
        """Worker thread: `_place`, then the catalog row committed from this thread (no hop back
        to the event loop and on to the database's writer); bytes whose row fails are removed."""
        meta, path = self._place(received)
        try:
            self.images.register_now(meta, owner)
        except BaseException:
            unlink_quietly(path)
            raise
        return meta, path

    def _perceptual_hash(self, file: FileIO, fmt: ImageFormat) -> str | None:
        """The PDQ hash of a validated upload (worker thread), if perceptual reuse hashes at
        upload; None when it does not, or when the image is too flat to say or will not decode
        (validation decides about the image, not this)."""
        if not self.hash_at_upload:
            return None
        try:
            with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
                found = hash_image(data, fmt.pillow)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            logger.info("upload: no perceptual hash (%s)", exc)
            return None
        return found.hex if found.quality >= MIN_QUALITY else None

    async def _replay(self, claim: Claim, sha256: str, owner: Principal) -> UploadOutcome | None:
        """The image an earlier request with this key created, or None to upload afresh (no
        record, or its image was deleted since)."""
        record = await self.idempotency.load(claim)
        if record is None:
            return None
        if record.fingerprint != sha256:
            raise IdempotencyMismatch()
        try:
            image = await self.images.catalog_entry(record.image_id, owner)  # its row, on any replica
        except ImageNotFound:
            logger.info("Idempotency-Key names deleted image_id=%s; uploading afresh", record.image_id)
            return None
        logger.info("upload replayed image_id=%s (Idempotency-Key)", record.image_id)
        return UploadOutcome(image.metadata, replayed=True)
