"""Image previews: a resized JPEG of a stored image, computed once and cached like an analysis.

A preview is a pure function of the image's bytes, its width (one of `PREVIEW_WIDTHS`, never
wider than the upright image) and the JPEG quality, so it is cached as an analysis result
is: the exact bytes under a name in the image's own result folder (`{image_id}/preview-
w{width}-q{quality}-v1.jpg`, which `app.storage.base.result_key`'s rule "every key of an image
starts with its id" covers), so a DELETE of the image removes its previews with its
analyses; published atomically, first writer wins (`ResultStore.create`; with object storage
`If-None-Match: *`, `app.storage.objects.publish`); concurrent first requests in a process
share one computation. Decoding runs on the analysis lane under the key `preview` (bounded
queue and wait: 503 `queue_full` rather than an unbounded backlog), a JPEG reduced while it is
decoded (`draft`), so that a 48 MP photo's 256-pixel preview costs a fraction of its decode.

A format without reduced decoding (HEIC: HEVC has no DCT scaling; a 12 MP HEIC costs ~1.1 s of
CPU to decode, the same picture as JPEG ~50 ms at 1/4) has a *rendition* (`RENDITION_FORMATS`):
the upright image at full size as a JPEG (`RENDITION_JPEG_QUALITY`, 4:2:0 as the HEIC itself,
its ICC profile kept, no EXIF orientation), made once per image and stored, cached and deleted
as a preview is (`{image_id}/rendition-q{quality}-v1.jpg`). Model-backed analyses and previews
decode the rendition instead of the file (`pixels`), reduced as a JPEG is; at full size, so
every coordinate is the stored image's (HEIC is stored upright by its decoder). It is made in
the background right after the upload answers (`warm`, `RENDITION_AT_UPLOAD`) or by the first
reader, on the analysis lane under the key `rendition`; readers of an image whose rendition is
being made wait for that one. With object storage (`STORAGE_URL`) the rendition is an object
of the image's (`images/{id}/results/rendition-q90-v1.jpg`: published first writer wins, deleted
with the image and swept with its orphans), which each reader decodes from a private temp copy
(`local_pixels`), as it decodes an image's bytes there; one process makes it at most once at a
time, and replicas that race each make one and keep the first published.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from app.analyzers.imaging import load_rgb
from app.core.errors import ImageNotFound, QueueFull, StorageUnavailable, ValidationFailed
from app.core.threads import ThreadPool
from app.services.analysis.scheduler import Lane
from app.services.images.catalog import ImageService
from app.storage.metadata import StoredImage

logger = logging.getLogger("app.previews")

PREVIEW_VERSION = 1  # part of the cache name: a new rendering makes new entries
RENDITION_VERSION = 1
LANE_KEY = "preview"
RENDITION_KEY = "rendition"
_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"


@dataclass(frozen=True)
class Preview:
    """A preview's JPEG bytes, its entity tag, and whether it came from the cache."""

    body: bytes
    etag: str
    cached: bool


def preview_name(image_id: str, width: int, quality: int) -> str:
    """The cache name of one preview of an image (in the image's result folder)."""
    return f"{image_id}/preview-w{width}-q{quality}-v{PREVIEW_VERSION}.jpg"


def rendition_name(image_id: str, quality: int) -> str:
    """The cache name of an image's full-size JPEG rendition (in the image's result folder)."""
    return f"{image_id}/rendition-q{quality}-v{RENDITION_VERSION}.jpg"


def render_rendition(path: Path, quality: int) -> bytes:
    """The upright image at full size as a JPEG (4:2:0; the ICC profile kept, no EXIF)."""
    image = load_rgb(path)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, subsampling="4:2:0", icc_profile=image.info.get("icc_profile"))
    return out.getvalue()


def is_whole_jpeg_file(path: Path) -> bool:
    """A stored rendition that starts and ends as a JPEG does (read: 4 bytes, not the file)."""
    try:
        with path.open("rb") as f:
            head = f.read(2)
            f.seek(-2, 2)
            return head == _JPEG_START and f.read(2) == _JPEG_END
    except (FileNotFoundError, NotADirectoryError, OSError):
        return False


def render_preview(path: Path, width: int, quality: int) -> bytes:
    """The upright image at most `width` pixels wide (never enlarged), as a baseline JPEG."""
    image = load_rgb(path, min_size=(width, width))  # a JPEG decodes at 1/2-1/8 when it can
    if image.width > width:
        height = max(1, round(image.height * width / image.width))
        image = image.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=2.0)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()


def is_whole_jpeg(raw: bytes | None) -> bool:
    """A cached preview that starts and ends as a JPEG does (else it is rendered again)."""
    return raw is not None and raw.startswith(_JPEG_START) and raw.endswith(_JPEG_END)


class PreviewService:
    """Previews of the images a caller may see (see the module)."""

    def __init__(
        self,
        images: ImageService,
        lane: Lane,
        io_pool: ThreadPool,
        widths: list[int],
        quality: int,
        rendition_formats: Collection[str] = (),
        rendition_quality: int = 90,
    ) -> None:
        self.images = images
        self.lane = lane
        self.io_pool = io_pool
        self.widths = widths
        self.quality = quality
        self.rendition_formats = frozenset(rendition_formats)
        self.rendition_quality = rendition_quality
        self._in_flight: dict[str, asyncio.Task[tuple[bytes, bool]]] = {}
        self._renditions: dict[str, asyncio.Task[Path]] = {}
        self._object_renditions: dict[str, asyncio.Task[bytes]] = {}

    def has_rendition(self, image: StoredImage) -> bool:
        """True if analyses of `image` read a rendition (its format has one)."""
        return image.metadata.image_format.name in self.rendition_formats

    async def pixels(self, image: StoredImage) -> Path:
        """The file to decode for `image`'s pixels (local storage; object storage:
        `local_pixels`): its rendition where its format has one (made now, at most once per
        image, if it is not stored yet), else the stored bytes. Raises what decoding raises
        (UndecodableImage) and QueueFull (503) from the lane."""
        if self.images.objects is not None or not self.has_rendition(image):
            return image.path
        name = rendition_name(image.metadata.image_id, self.rendition_quality)
        task = self._renditions.get(name)
        if task is None:
            task = asyncio.ensure_future(self._rendition(image, name))
            self._renditions[name] = task
            task.add_done_callback(lambda done: self._renditions.pop(name, None))
        return await asyncio.shield(task)

    def warm(self, image: StoredImage) -> None:
        """Make `image`'s rendition in the background (after its upload answered), if it has one;
        a full lane or an undecodable image is left to the first reader, which meets it again."""
        if self.has_rendition(image):
            asyncio.ensure_future(self._warm(image))

    async def _warm(self, image: StoredImage) -> None:
        objects = self.images.objects
        try:
            if objects is None:
                await self.pixels(image)
            else:
                name = rendition_name(image.metadata.image_id, self.rendition_quality)
                if not await objects.has_result(name):
                    await self._object_rendition(image, name)
        except (QueueFull, ImageNotFound, StorageUnavailable) as exc:
            logger.info("rendition of image_id=%s not made after upload (%s)", image.metadata.image_id, exc)
        except Exception as exc:  # the analysis that reads it reports it (4xx)
            logger.info("rendition of image_id=%s failed after upload: %s", image.metadata.image_id, exc)

    def close(self) -> None:
        """Cancel renditions still being made (at shut-down; the next reader makes them)."""
        for task in [*self._renditions.values(), *self._object_renditions.values()]:
            task.cancel()

    @contextlib.asynccontextmanager
    async def local_pixels(self, image: StoredImage) -> AsyncIterator[Path | None]:
        """With object storage: a private temp copy of the file to decode for `image`'s pixels
        (None if the image is gone), removed afterwards: its rendition where its format has one
        (made now if it is not stored yet, or not a whole JPEG), else the image's bytes. Raises
        what decoding raises, QueueFull from the lane and StorageUnavailable (503)."""
        objects = self.images.objects
        assert objects is not None, "local storage decodes `pixels`"
        if not self.has_rendition(image):
            async with objects.local_copy(image.metadata) as copy:
                yield copy
            return
        name = rendition_name(image.metadata.image_id, self.rendition_quality)
        async with objects.result_copy(name) as copy:
            if copy is not None and await self.io_pool.run(is_whole_jpeg_file, copy):
                yield copy
                return
        if copy is not None:
            logger.warning("stored rendition %s is not a whole JPEG; rendering it again", name)
        try:
            body = await self._object_rendition(image, name)
        except ImageNotFound:
            yield None
            return
        async with objects.bytes_copy(body) as made:
            yield made

    def _object_rendition(self, image: StoredImage, name: str) -> asyncio.Future[bytes]:
        """The rendition's stored bytes, made and published by one task per process at a time."""
        task = self._object_renditions.get(name)
        if task is None:
            task = asyncio.ensure_future(self._make_object_rendition(image, name))
            self._object_renditions[name] = task
            task.add_done_callback(lambda done: self._object_renditions.pop(name, None))
        return asyncio.shield(task)

    async def _make_object_rendition(self, image: StoredImage, name: str) -> bytes:
        objects = self.images.objects
        assert objects is not None
        meta = image.metadata
        started = time.perf_counter()
        async with objects.local_copy(meta) as copy:
            if copy is None:
                raise ImageNotFound(f"Image {meta.image_id} not found")
            body = await self.lane.run(RENDITION_KEY, render_rendition, copy, self.rendition_quality)
        winner = await objects.publish_result(name, body, is_whole_jpeg)
        if not await objects.has_image(meta.image_id):  # deleted meanwhile: leave nothing behind
            await objects.remove(meta.image_id)
            raise ImageNotFound(f"Image {meta.image_id} not found")
        logger.info(
            "rendition image_id=%s stored: %d bytes in %.0f ms",
            meta.image_id,
            len(winner),
            (time.perf_counter() - started) * 1000,
        )
        return winner

    async def _rendition(self, image: StoredImage, name: str) -> Path:
        path = self.images.results.path_of(name)
        if await self.io_pool.run(is_whole_jpeg_file, path):
            return path
        if path.exists():
            logger.warning("stored rendition %s is not a whole JPEG; rendering it again", name)
        started = time.perf_counter()
        body = await self.lane.run(RENDITION_KEY, render_rendition, image.path, self.rendition_quality)
        await self.io_pool.run(self._publish, image, name, body)
        logger.info(
            "rendition image_id=%s made: %d bytes in %.0f ms",
            image.metadata.image_id,
            len(body),
            (time.perf_counter() - started) * 1000,
        )
        return path

    def check_width(self, width: int) -> None:
        """ValidationFailed (400) for a width that is not one of `PREVIEW_WIDTHS`."""
        if width not in self.widths:
            allowed = ", ".join(str(w) for w in self.widths)
            message = f"must be one of {allowed} (PREVIEW_WIDTHS)"
            raise ValidationFailed.from_errors([{"loc": ("query", "width"), "msg": message, "type": "enum"}])

    async def preview(self, image: StoredImage, width: int) -> Preview:
        """The preview of a stored image (one `ImageService.get` gave, visibility checked) at
        `width` (ValidationFailed unless one of `PREVIEW_WIDTHS`), rendered at most once."""
        self.check_width(width)
        meta = image.metadata
        # The upright width is the stored width or height: never cache wider than both.
        width = min(width, max(meta.width, meta.height))
        name = preview_name(meta.image_id, width, self.quality)
        task = self._in_flight.get(name)
        leader = task is None
        if task is None:
            task = asyncio.ensure_future(self._resolve(image, width, name))
            self._in_flight[name] = task
            task.add_done_callback(lambda done: self._in_flight.pop(name, None))
        body, computed = await asyncio.shield(task)
        return Preview(body, self.etag_of(image, width), cached=not (leader and computed))

    def etag_of(self, image: StoredImage, width: int) -> str:
        """The entity tag a preview of `image` at `width` has (known before it is rendered)."""
        meta = image.metadata
        width = min(width, max(meta.width, meta.height))
        return f'"{meta.sha256[:40]}-w{width}-q{self.quality}-v{PREVIEW_VERSION}"'

    async def _resolve(self, image: StoredImage, width: int, name: str) -> tuple[bytes, bool]:
        objects = self.images.objects
        meta = image.metadata
        if objects is None:
            raw = await self.io_pool.run(self.images.results.read, name)
        else:
            raw = await objects.read_result(name)
        if is_whole_jpeg(raw):
            assert raw is not None
            return raw, False
        if raw is not None:
            logger.warning("cached preview %s is not a whole JPEG; rendering it again", name)
        if objects is None:
            source = await self.pixels(image)  # a HEIC's rendition: reduced decoding
            body = await self.lane.run(LANE_KEY, render_preview, source, width, self.quality)
            return await self.io_pool.run(self._publish, image, name, body), True
        async with self.local_pixels(image) as copy:  # a HEIC's rendition: reduced decoding
            if copy is None:
                raise ImageNotFound(f"Image {meta.image_id} not found")
            body = await self.lane.run(LANE_KEY, render_preview, copy, width, self.quality)
        winner = await objects.publish_result(name, body, is_whole_jpeg)
        if not await objects.has_image(meta.image_id):  # deleted meanwhile: leave nothing behind
            await objects.remove(meta.image_id)
            raise ImageNotFound(f"Image {meta.image_id} not found")
        return winner, True

    def _publish(self, image: StoredImage, name: str, body: bytes) -> bytes:
        """Store a fresh preview (first writer wins; a broken entry is replaced); the bytes to
        serve. ImageNotFound if the image was deleted while it was rendered (a delete unlinks
        the bytes before the results: checked after creating ours, nothing stays behind)."""
        results = self.images.results
        image_id = image.metadata.image_id
        published = results.create(name, body)
        if not image.path.exists():
            results.delete_for_image(image_id)
            raise ImageNotFound(f"Image {image_id} not found")
        if not published:
            winner = results.read(name)
            if is_whole_jpeg(winner):
                assert winner is not None
                return winner
            results.replace(name, body)
        return body
