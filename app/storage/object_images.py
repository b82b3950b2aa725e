"""Image bytes and analysis results in an `ObjectStore` (scale-out mode, `STORAGE_URL=s3://...`).

What the services need of stored bytes, over the object layout of `app.storage.objects`:
an upload validated in a local temp file is put under its id (`If-None-Match: *`); a result
named as `app.storage.base.result_key` names it (`{id}.json`, `{id}/{variant}.json`) lives
at `images/{id}/results/{default|variant}.json`, created first-writer-wins and repaired with
`If-Match` (`objects.publish`); analyzers get a local temp copy made from the object, never a
path into the store (a HEIC's rendition, `{id}/rendition-...jpg`, is a result too, at
`images/{id}/results/rendition-...jpg`, read through such a copy); DELETE removes the
image's prefix. Temp files stay in the local data dir (`images/`), where the start-up sweep
of dead processes' temp files finds them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio

from app.core.errors import StorageUnavailable
from app.core.ids import is_uuid4
from app.storage import objects
from app.storage.atomic import temp_path_for, unlink_quietly
from app.storage.metadata import ImageMetadata
from app.storage.objects import ObjectStore, ObjectStream

IMAGES = "images/"  # the prefix of every image's objects (`objects.image_prefix`)
DEFAULT_RESULT = "default.json"  # the default analyzer's result (`{id}.json` in the data dir)


def object_result_key(name: str) -> str:
    """The object key of a result named `{image_id}.json` or `{image_id}/{variant}.json`."""
    image_id, sep, rest = name.partition("/")
    if not sep:
        image_id, rest = name.removesuffix(".json"), DEFAULT_RESULT
    return objects.result_key(image_id, rest)


class ObjectImages:
    """An image store and result store over one `ObjectStore` (see the module docstring)."""

    def __init__(self, store: ObjectStore, temp_dir: Path) -> None:
        self.store = store
        self.temp_dir = temp_dir

    @staticmethod
    def key(meta: ImageMetadata) -> str:
        """The object key of an image's bytes."""
        return objects.image_key(meta.image_id, meta.image_format.extension)

    async def put(self, temp: Path, meta: ImageMetadata) -> None:
        """Create the image's object from its validated temp file (`If-None-Match: *`)."""
        await self.store.put_file(self.key(meta), temp, sha256=meta.sha256, content_type=meta.content_type)

    async def exists(self, meta: ImageMetadata) -> bool:
        """True if the image's bytes are in the store."""
        return await self.store.stat(self.key(meta)) is not None

    async def has_image(self, image_id: str) -> bool:
        """True if an image's bytes are in the store (whatever their format): one listing."""
        async for _ in self.store.list(objects.image_key(image_id, "")):
            return True
        return False

    async def open(self, meta: ImageMetadata, first: int = 0, last: int | None = None) -> ObjectStream | None:
        """A stream of the image's bytes `first`..`last` (inclusive), or None if they are gone."""
        return await self.store.open(self.key(meta), first, last)

    def local_copy(self, meta: ImageMetadata) -> contextlib.AbstractAsyncContextManager[Path | None]:
        """A private temp copy of the image's bytes for an analyzer (None if they are gone),
        removed afterwards."""
        return self._copy(self.key(meta))

    def result_copy(self, name: str) -> contextlib.AbstractAsyncContextManager[Path | None]:
        """A private temp copy of a stored result (a HEIC's rendition: `name` as
        `object_result_key` takes it) for a decoder (None if there is none), removed afterwards."""
        return self._copy(object_result_key(name))

    @contextlib.asynccontextmanager
    async def bytes_copy(self, data: bytes) -> AsyncIterator[Path]:
        """A private temp file holding `data` (bytes just published), removed afterwards."""
        path = temp_path_for(self.temp_dir)
        try:
            async with await anyio.open_file(path, "xb") as file:
                await file.write(data)
            yield path
        finally:
            await anyio.to_thread.run_sync(unlink_quietly, path)

    @contextlib.asynccontextmanager
    async def _copy(self, key: str) -> AsyncIterator[Path | None]:
        stream = await self.store.open(key)
        if stream is None:
            yield None
            return
        path = temp_path_for(self.temp_dir)
        try:
            async with stream:
                file = await anyio.open_file(path, "xb")
                async with file:
                    async for chunk in stream:
                        await file.write(chunk)
            yield path
        finally:
            await anyio.to_thread.run_sync(unlink_quietly, path)

    async def remove(self, image_id: str) -> int:
        """Remove every object of one image; how many. The bytes go first: a result published
        meanwhile is either in the second listing, or its publisher sees the bytes gone
        (`has_image`) and removes it."""
        removed = await self.store.delete_prefix(objects.image_key(image_id, ""))
        return removed + await objects.delete_image(self.store, image_id)

    async def remove_quietly(self, image_id: str) -> None:
        """`remove`, for clean-up after another failure: a store that is down leaves the
        objects for a later delete (logged by the store)."""
        with contextlib.suppress(StorageUnavailable):
            await self.remove(image_id)

    async def ages(self) -> dict[str, float]:
        """Every image id with an object in the store, and the time of its newest object (one
        listing of every image's objects: a start-up cost that grows with the store)."""
        newest: dict[str, float] = {}
        async for info in self.store.list(IMAGES):
            image_id = info.key[len(IMAGES) :].partition("/")[0]
            if not is_uuid4(image_id):
                continue  # not written by this service: left alone
            newest[image_id] = max(newest.get(image_id, 0.0), info.modified)
        return newest

    async def has_result(self, name: str) -> bool:
        """True if a result is stored under `name` (a HEAD: its bytes are not read)."""
        return await self.store.stat(object_result_key(name)) is not None

    async def read_result(self, name: str) -> bytes | None:
        """The stored bytes of a result, or None."""
        stored = await self.store.read(object_result_key(name))
        return None if stored is None else stored.data

    async def publish_result(self, name: str, body: bytes, valid: Callable[[bytes], bool]) -> bytes:
        """Publish a computed result; the bytes every client must get (a valid winner's)."""
        return (await objects.publish(self.store, object_result_key(name), body, valid)).data

    async def start(self) -> None:
        """Create the store's client, if it has one to create (connections open on demand)."""
        start = getattr(self.store, "start", None)
        if start is not None:
            await start()

    async def check(self) -> None:
        """Readiness: StorageUnavailable unless the store answers."""
        await self.store.check()

    async def close(self) -> None:
        """Release the store's connections."""
        await self.store.close()
