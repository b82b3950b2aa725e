"""Stored images: the catalog (metadata + owner, in the database) over the bytes (image store).

Visibility: a caller sees an image it owns (admins see every image); for anyone else it
does not exist (404, never 403). Catalog rows are cached in memory (`peek`), so that a
cached analysis is served without a database round trip; the bytes' presence (one `stat`)
is what tells a worker that another one deleted the image.

With `STORAGE_URL=s3://...` the bytes and results are objects (`objects`, an
`ObjectImages`): nothing is read from the local disk but temp files, a cached catalog row is
checked against the catalog (the source of truth: a DELETE through any replica removes the
row before the bytes) on every read, one indexed read instead of an S3 HEAD (a third of a
cache hit's CPU), and `peek` finds nothing (no await). Bytes that are gone anyway are found
missing where they are read (404).

Start-up (`recover`) removes bytes that no catalog row names (a crash between the rename
and the commit; never acknowledged to the client) once they are older than a grace
period, and imports the metadata files of earlier versions (owner: anonymous).
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import mmap
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.errors import AppError, ImageNotFound, StorageUnavailable
from app.core.formats import BY_EXTENSION, FORMATS
from app.core.security import ANONYMOUS
from app.core.threads import ThreadPool
from app.db import images as catalog
from app.db.engine import is_sqlite
from app.services.accounts.principals import Principal
from app.services.validation.checks import examine_image
from app.storage.atomic import unlink_quietly
from app.storage.base import ImageStore, ResultStore
from app.storage.metadata import ImageMetadata, StoredImage
from app.storage.object_images import ObjectImages

logger = logging.getLogger("app.images")

ORPHAN_GRACE_SECONDS = 600.0
ORPHAN_LOCK_KEY = 727_219  # pg advisory lock of the object orphan sweep (one replica at a time)


class ImageService:
    """Reads, listings and deletes of published images (uploads are `IngestService`'s)."""

    def __init__(
        self,
        store: ImageStore,
        results: ResultStore,
        sessions: async_sessionmaker[AsyncSession],
        database_url: str,
        pool: ThreadPool,
        max_image_pixels: int,
        cache_entries: int = 10_000,
        objects: ObjectImages | None = None,
        orphan_grace_seconds: float = ORPHAN_GRACE_SECONDS,
    ) -> None:
        self.store = store  # with `objects`: only the temp files of uploads
        self.objects = objects
        self.orphan_grace_seconds = orphan_grace_seconds
        self.results = results
        self.sessions = sessions
        self.pool = pool
        self.max_image_pixels = max_image_pixels
        self._cache: OrderedDict[str, StoredImage] = OrderedDict()
        self.database_url = database_url
        self._rows = catalog.row_writer(database_url, sessions)
        self.close = self._rows.close
        self._cache_entries = cache_entries
        self._reads = catalog.autocommit(sessions)

    def peek(self, image_id: str, viewer: Principal) -> StoredImage | None:
        """The cached image if `viewer` may see it and its bytes are still there; None if
        unknown to the cache (ask `get`) or gone."""
        image = self._cache.get(image_id)
        if image is None or not viewer.can_see(image.owner) or self.objects is not None:
            return None
        if not image.path.exists():
            self._cache.pop(image_id, None)
            return None
        return image

    def forget(self, image_id: str) -> None:
        """Drop an image's cached catalog entry (its row changed): the next `get` reads it."""
        self._cache.pop(image_id, None)

    def cached(self, image_id: str) -> StoredImage | None:
        """The cached catalog entry of an image, unchecked (for describing a request)."""
        return self._cache.get(image_id)

    async def get(self, image_id: str, viewer: Principal) -> StoredImage:
        """The image, if `viewer` may see it; ImageNotFound otherwise."""
        image = self._cache.get(image_id)
        listed = image is None  # the row read now: no second look at the catalog
        if image is None:
            image = await self.catalog_entry(image_id, viewer)
        if not viewer.can_see(image.owner):
            raise ImageNotFound(f"Image {image_id} not found")
        if self.objects is not None:
            if not listed and not await self._still_listed(image):
                self._cache.pop(image_id, None)
                raise ImageNotFound(f"Image {image_id} not found")
            return image
        if not await self.pool.run(image.path.exists):
            logger.error("image_id=%s is in the catalog but its bytes are gone", image_id)
            self._cache.pop(image_id, None)
            raise ImageNotFound(f"Image {image_id} not found")
        return image

    async def catalog_entry(self, image_id: str, viewer: Principal) -> StoredImage:
        """The image's catalog row (read now, never from the cache), if `viewer` may see it,
        without looking at its bytes (another replica may hold them); ImageNotFound otherwise."""
        async with self.sessions() as session:
            row = await catalog.get_image(session, image_id=image_id)
        if row is None or not viewer.can_see(row.owner):
            raise ImageNotFound(f"Image {image_id} not found")
        meta = catalog.to_metadata(row)
        image = StoredImage(meta, row.owner, self.store.content_path(image_id, meta.image_format.extension))
        self._remember(image)
        return image

    async def _still_listed(self, image: StoredImage) -> bool:
        """Object storage: whether the cached entry's catalog row is still there (a DELETE
        through any replica removes the row first); one indexed read, cheaper than asking S3."""
        return await catalog.owner_of(self._reads, image_id=image.metadata.image_id) == image.owner

    async def put_object(self, temp: Path, meta: ImageMetadata) -> Path:
        """Object storage: put a validated upload's temp file under its id (`If-None-Match: *`);
        the path its StoredImage names (never read)."""
        assert self.objects is not None
        await self.objects.put(temp, meta)
        return self.store.content_path(meta.image_id, meta.image_format.extension)

    async def unpublish(self, meta: ImageMetadata, path: Path) -> None:
        """Remove the bytes of an upload whose catalog row was not committed."""
        if self.objects is not None:
            await self.objects.remove_quietly(meta.image_id)
        else:
            unlink_quietly(path)

    async def metadata(self, image_id: str, viewer: Principal) -> ImageMetadata:
        return (await self.get(image_id, viewer)).metadata

    async def register(
        self,
        meta: ImageMetadata,
        owner: str,
        path: Path,
        also: Callable[[AsyncSession], Awaitable[None]] | None = None,
    ) -> StoredImage:
        """Commit the catalog row of bytes already in place: from now on the image exists.
        Concurrent uploads share one transaction (group commit); with `also` (say, an
        Idempotency-Key's record), the row and what `also` writes commit in one transaction."""
        if also is None:
            await self._rows.commit(meta, owner)
        else:
            async with self.sessions.begin() as session:
                await catalog.add_images(session, images=[(meta, owner)])
                await also(session)
        image = StoredImage(meta, owner, path)
        self._remember(image)
        return image

    @property
    def commits_in_thread(self) -> bool:
        """Whether an upload's worker thread can commit its row itself (`register_now`): local
        bytes and a catalog on SQLite."""
        return self._rows.commit_now is not None and self.objects is None

    def register_now(self, meta: ImageMetadata, owner: str) -> None:
        """Worker thread (see `commits_in_thread`): commit the catalog row of bytes already in
        place, blocking until it is; the event loop then calls `registered`."""
        assert self._rows.commit_now is not None
        self._rows.commit_now(meta, owner)

    def registered(self, meta: ImageMetadata, owner: str, path: Path) -> StoredImage:
        """The image whose row `register_now` committed, remembered (event loop)."""
        image = StoredImage(meta, owner, path)
        self._remember(image)
        return image

    async def list(self, viewer: Principal, limit: int, offset: int) -> tuple[int, list[ImageMetadata]]:
        """(total, page) of the images `viewer` owns (admins: every image), newest first."""
        owner = None if viewer.is_admin else viewer.id
        async with self.sessions() as session:
            total, rows = await catalog.list_images(session, owner=owner, limit=limit, offset=offset)
        return total, [catalog.to_metadata(row) for row in rows]

    async def delete(self, image_id: str, viewer: Principal) -> None:
        """Remove an image, its catalog row and every cached analysis of it."""
        image = await self.get(image_id, viewer)
        if self.objects is not None:
            await self.objects.check()  # an unreachable store: 503 before the row is removed
        if not await self._remove(image):  # a concurrent DELETE removed the row first
            raise ImageNotFound(f"Image {image_id} not found")
        logger.info("deleted image_id=%s", image_id)

    async def delete_owned(self, owner: str) -> Sequence[str]:
        """Remove every image of `owner` (account erasure): the rows in one statement, then the
        files (per image, at a cost that does not grow with the store); the ids removed."""
        if self.objects is not None:
            await self.objects.check()  # an unreachable store: 503 before any row is removed
        async with self.sessions.begin() as session:
            rows = await catalog.delete_owned(session, owner=owner)
        for image_id, _ in rows:
            self._cache.pop(image_id, None)
        if rows and self.objects is not None:
            for image_id, _ in rows:
                await self.objects.remove(image_id)
        elif rows:
            await self.pool.run(self._remove_all_files, rows)
        return [image_id for image_id, _ in rows]

    def _remove_all_files(self, rows: Sequence[tuple[str, str]]) -> None:
        for image_id, fmt in rows:
            extension = FORMATS[fmt].extension if fmt in FORMATS else None
            if extension is not None:
                self.store.delete(image_id, extension)
            self.results.delete_for_image(image_id)

    async def _remove(self, image: StoredImage) -> bool:
        """Remove the row, then the bytes; False if the row was already gone (another
        request removed it, and its files with it)."""
        async with self.sessions.begin() as session:
            removed = await catalog.delete_image(session, image_id=image.metadata.image_id)
        self._cache.pop(image.metadata.image_id, None)
        if removed and self.objects is not None:
            await self.objects.remove(image.metadata.image_id)
        elif removed:
            await self.pool.run(self._remove_files, image)
        return removed

    def _remove_files(self, image: StoredImage) -> None:
        unlink_quietly(image.path)
        self.results.delete_for_image(image.metadata.image_id)

    def _remember(self, image: StoredImage) -> None:
        self._cache[image.metadata.image_id] = image
        self._cache.move_to_end(image.metadata.image_id)
        while len(self._cache) > self._cache_entries:
            self._cache.popitem(last=False)

    # -- start-up ---------------------------------------------------------------------

    async def recover(self) -> None:
        """Repair what a crash or an earlier version left (see module docstring)."""
        await self.pool.run(self.store.recover)
        await self.pool.run(self.results.recover)
        legacy = await self.pool.run(self._read_legacy)
        if legacy:
            async with self.sessions.begin() as session:
                known = await catalog.known_ids(session, image_ids=[meta.image_id for meta, _ in legacy])
                await catalog.add_images(
                    session, images=[(meta, ANONYMOUS) for meta, _ in legacy if meta.image_id not in known]
                )
            for _, path in legacy:
                unlink_quietly(path)
            logger.warning("imported %d image(s) from metadata files of an earlier version", len(legacy))
        if self.objects is not None:
            await self._sweep_objects()
        files = await self.pool.run(lambda: list(self.store.files()))
        async with self.sessions() as session:
            known = await catalog.known_ids(session, image_ids=[f.image_id for f in files])
        cutoff = time.time() - self.orphan_grace_seconds
        orphans = [f for f in files if f.image_id not in known and f.mtime < cutoff]
        for orphan in orphans:
            self.store.delete(orphan.image_id, orphan.extension)
            self.results.delete_for_image(orphan.image_id)
        if orphans:
            logger.warning(
                "removed %d image file(s) that no catalog row names (crashed uploads)", len(orphans)
            )

    async def _sweep_objects(self) -> None:
        """Object storage: remove the objects of images no catalog row names, by age (never by
        process): an image whose newest object is older than the grace period and has no row
        was never acknowledged (a crash between the put and the commit). On PostgreSQL one
        replica sweeps at a time (a transaction advisory lock; a replica that finds it taken
        skips, the holder's sweep covers the same objects); on SQLite (one host) as before."""
        assert self.objects is not None
        async with self.sessions() as session:
            if not is_sqlite(self.database_url):
                taken = await session.execute(
                    text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": ORPHAN_LOCK_KEY}
                )
                if not taken.scalar():
                    logger.info("another replica is sweeping orphaned objects: skipped")
                    return
            try:
                ages = await self.objects.ages()
            except StorageUnavailable:
                logger.warning("object storage unreachable at start-up: orphan sweep skipped")
                return
            known = await catalog.known_ids(session, image_ids=list(ages))
            cutoff = time.time() - self.orphan_grace_seconds
            orphans = [
                image_id for image_id, newest in ages.items() if image_id not in known and newest < cutoff
            ]
            for image_id in orphans:
                await self.objects.remove_quietly(image_id)
            await session.commit()  # releases the lock
        if orphans:
            logger.warning("removed the objects of %d image(s) that no catalog row names", len(orphans))

    def _read_legacy(self) -> builtins.list[tuple[ImageMetadata, Path]]:
        found: builtins.list[tuple[ImageMetadata, Path]] = []
        for image_id, path in self.store.legacy_metadata():
            try:
                meta = ImageMetadata.model_validate_json(path.read_bytes())
                if meta.image_id != image_id or meta.format not in FORMATS:
                    raise ValueError("metadata of another image")
            except (OSError, ValidationError, ValueError):
                rebuilt = self._rebuild(image_id)
                if rebuilt is None:
                    unlink_quietly(path)
                    continue
                meta = rebuilt
            found.append((meta, path))
        return found

    def _rebuild(self, image_id: str) -> ImageMetadata | None:
        """Metadata recreated from an image's bytes (the client's file name is lost)."""
        for extension, fmt in BY_EXTENSION.items():
            path = self.store.content_path(image_id, extension)
            try:
                with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                    sha256 = hashlib.sha256(data).hexdigest()
                    info = examine_image(data, fmt, self.max_image_pixels)
                    stat = os.fstat(f.fileno())
            except FileNotFoundError:
                continue
            except (AppError, OSError, ValueError) as exc:
                logger.error("image_id=%s has no valid bytes (%s); leaving it unpublished", image_id, exc)
                return None
            return ImageMetadata.describe(
                image_id=image_id,
                filename=None,
                fmt=fmt,
                size_bytes=stat.st_size,
                width=info.width,
                height=info.height,
                sha256=sha256,
                created_at=stat.st_mtime,
                upright=(info.upright_width, info.upright_height),
            )
        return None
