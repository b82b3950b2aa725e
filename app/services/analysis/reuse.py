"""Perceptual reuse: the stored results of near-duplicate images that may answer for an image.

An image's PDQ hash (computed at upload, or here the first time it is needed) is looked up
through its indexed bands (`app.db.images.near_duplicates`); each candidate's full Hamming
distance is checked, and only images of the same owner (unless `PERCEPTUAL_REUSE_SCOPE=any`)
and, for analyzers whose results are pixel coordinates, of the same upright size are kept,
nearest first. A reuse is never silent: the body says `reused_from` (the earlier image and the
distance) and the route answers `X-Cache: REUSED`. A reused body is not stored under the
image's own name: deleting the earlier image ends the reuse, and an opt-out gets its own result.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from app.analyzers.base import Analyzer, reuse_scope
from app.core.errors import ValidationFailed
from app.core.threads import ThreadPool
from app.db import images as catalog
from app.services.analysis.settings import ReuseSettings
from app.services.images.catalog import ImageService
from app.services.images.perceptual import MIN_QUALITY, bands, distance, hash_image, probe_radius, probes
from app.storage.metadata import StoredImage

logger = logging.getLogger("app.analysis")


@dataclass(frozen=True)
class Reuse:
    """The earlier image whose result answered, and its distance to this one."""

    image_id: str
    distance: int


@dataclass(frozen=True)
class Candidate:
    """A near-duplicate image that may hold a result to reuse."""

    image_id: str
    distance: int


def reused_body(raw: bytes, image_id: str, reuse: Reuse) -> bytes:
    """The earlier image's result body, answering for `image_id` and saying so."""
    body = json.loads(raw)
    body["image_id"] = image_id
    body["reused_from"] = {"image_id": reuse.image_id, "distance": reuse.distance}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


class PerceptualReuse:
    """Finds near-duplicates of an image among the catalog's hashed images."""

    def __init__(
        self,
        images: ImageService,
        pool: ThreadPool,
        *,
        distance: int,
        any_owner: bool,
        max_candidates: int,
        pixels: Callable[[StoredImage], Awaitable[Path]] | None = None,
        local_pixels: Callable[[StoredImage], AbstractAsyncContextManager[Path | None]] | None = None,
    ) -> None:
        self.images = images
        # The file to decode for an image's pixels (a HEIC's rendition); None: the stored bytes
        self.pixels = pixels
        self.local_pixels = local_pixels  # with object storage: a local copy of that file
        self.pool = pool
        self.distance = distance
        self.any_owner = any_owner
        self.max_candidates = max_candidates

    def max_distance(self, analyzer: Analyzer, requested: int | None) -> int:
        """The threshold for one request (0: no reuse): the setting, or a tighter one the request
        asks for; ValidationFailed (400) for a wider one."""
        asked = requested_distance(self.distance, requested)
        return 0 if reuse_scope(analyzer) == "none" else asked

    async def candidates(self, image: StoredImage, analyzer: Analyzer, max_distance: int) -> list[Candidate]:
        """Near-duplicates of `image` that `analyzer`'s results may answer for, nearest first."""
        own = await self.hash_of(image)
        if own is None or max_distance <= 0:
            return []
        radius = probe_radius(max_distance)
        owner = None if self.any_owner else image.owner
        async with self.images.sessions() as session:
            rows = await catalog.near_duplicates(
                session,
                probes=[probes(band, radius) for band in bands(own)],
                owner=owner,
                exclude=image.metadata.image_id,
            )
        meta = image.metadata
        same_size = reuse_scope(analyzer) == "same_size"
        found = []
        for row in rows:
            if row.perceptual_hash is None:
                continue
            if same_size and (row.upright_width or row.width, row.upright_height or row.height) != (
                meta.upright_width,
                meta.upright_height,
            ):
                continue
            d = distance(own, row.perceptual_hash)
            if d <= max_distance:
                found.append((d, -row.created_ts, row.image_id))
        found.sort()
        return [Candidate(image_id, d) for d, _, image_id in found[: self.max_candidates]]

    async def hash_of(self, image: StoredImage) -> str | None:
        """The image's hash: from its row, else computed now (once) and stored in the row."""
        meta = image.metadata
        if meta.perceptual_hash is not None:
            return meta.perceptual_hash
        objects = self.images.objects
        try:
            if objects is None:
                # A HEIC's rendition (made once, read by the analysis next): no second full decode
                path = image.path if self.pixels is None else await self.pixels(image)
                fmt = meta.image_format.pillow if path == image.path else None
                computed = await self.pool.run(hash_image, path, fmt)
            elif self.local_pixels is not None:  # the rendition or the image's bytes: either decoder
                async with self.local_pixels(image) as copy:
                    if copy is None:
                        return None
                    computed = await self.pool.run(hash_image, copy, None)
            else:
                async with objects.local_copy(meta) as copy:
                    if copy is None:
                        return None
                    computed = await self.pool.run(hash_image, copy, meta.image_format.pillow)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            # pixels that will not decode: no reuse; the analyzer reports its own error
            logger.info("no perceptual hash for image_id=%s (%s)", meta.image_id, exc)
            return None
        if computed.quality < MIN_QUALITY:
            return None  # too flat to say (computed again next time: rare, and cheap)
        async with self.images.sessions.begin() as session:
            await catalog.set_perceptual_hash(session, image_id=meta.image_id, perceptual_hash=computed.hex)
        self.images.forget(meta.image_id)  # the cached entry has no hash: read the row again
        logger.info("perceptual hash of image_id=%s computed after upload", meta.image_id)
        return computed.hex


def requested_distance(limit: int, requested: int | None) -> int:
    """One request's reuse threshold: `limit` (PERCEPTUAL_REUSE_DISTANCE), or the tighter one it
    asks for; ValidationFailed (400) for a wider one (analyses and contour jobs alike)."""
    if requested is not None and requested > limit:
        raise ValidationFailed(
            f"reuse_distance {requested} exceeds this server's limit (PERCEPTUAL_REUSE_DISTANCE={limit})",
            extra={"fields": ["reuse_distance"]},
        )
    return limit if requested is None else requested


def perceptual_reuse(
    settings: ReuseSettings,
    images: ImageService,
    pool: ThreadPool,
    pixels: Callable[[StoredImage], Awaitable[Path]] | None = None,
    local_pixels: Callable[[StoredImage], AbstractAsyncContextManager[Path | None]] | None = None,
) -> PerceptualReuse | None:
    """The reuse policy from settings; None when `PERCEPTUAL_REUSE_DISTANCE` is 0 (off)."""
    if settings.perceptual_reuse_distance == 0:
        return None
    return PerceptualReuse(
        images,
        pool,
        distance=settings.perceptual_reuse_distance,
        any_owner=settings.perceptual_reuse_scope == "any",
        max_candidates=settings.perceptual_reuse_max_candidates,
        pixels=pixels,
        local_pixels=local_pixels,
    )
