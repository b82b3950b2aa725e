"""The object store the services move to: keyed bytes, async, never a host path.

One protocol for every place bytes live (S3 in scale-out mode; the local data dir by
default), so that analyzers get bytes or a stream and any replica can serve any object.

Key layout, relative to the store's root (an S3 prefix, or the data dir)::

    images/{image_id}/original.{ext}    the uploaded bytes
    images/{image_id}/results/{name}    analysis results (the exact response bytes)
    jobs/{kind}/{key}                   job inputs and outputs (content-addressed)

Everything of one image is under one prefix, so deleting an image is one listing of that
prefix and a batch delete, whatever the number of objects in the store.

Write semantics (the contract both implementations keep):

- `put_file` creates an image from a finished, validated local temp file, only if nothing
  is under its key (`If-None-Match: *`). The same bytes there already (a retried put whose
  answer was lost) count as success; other bytes raise `ObjectExists`.
- `create` is first-writer-wins (`If-None-Match: *`): every caller, winner or not, gets the
  bytes that are stored (`Stored.created` says which one wrote them).
- `replace` swaps in new bytes only if the stored ETag is still the one the caller read
  (`If-Match`), so of two repairs of one corrupt entry exactly one wins; None if it lost.
- `publish` combines the two: create, keep a valid winner, replace an invalid one.
- A result created while its image is being deleted can outlive the delete's listing: after
  creating, a service checks that the image still exists and, if not, deletes its prefix again
  (as `AnalysisService._publish` does today with files).

An unreachable or failing store raises `StorageUnavailable` (503, `Retry-After`) from any
method, never a bare client error; a missing object is None, never an exception.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Protocol

from app.core.errors import StorageUnavailable

__all__ = [
    "ObjectExists",
    "ObjectInfo",
    "ObjectStore",
    "ObjectStream",
    "Stored",
    "delete_image",
    "image_key",
    "image_prefix",
    "job_key",
    "publish",
    "result_key",
]


def image_prefix(image_id: str) -> str:
    """The prefix every object of one image is under."""
    return f"images/{image_id}/"


def image_key(image_id: str, extension: str) -> str:
    """The key of an image's uploaded bytes."""
    return f"{image_prefix(image_id)}original.{extension}"


def result_key(image_id: str, name: str) -> str:
    """The key of one analysis result of an image (`name` as `analysis.result_name` gives it)."""
    return f"{image_prefix(image_id)}results/{name}"


def job_key(kind: Literal["inputs", "results"], key: str) -> str:
    """The key of a job's input or output (content-addressed by the job's key)."""
    return f"jobs/{kind}/{key}"


@dataclass(frozen=True)
class ObjectInfo:
    """What the store knows about one object without reading it."""

    key: str
    size: int
    etag: str  # opaque version tag: changes whenever the bytes are replaced
    modified: float  # Unix time of the last write


@dataclass(frozen=True)
class Stored:
    """An object's whole bytes and the ETag they were read or written with."""

    data: bytes
    etag: str
    created: bool = False  # True only for the create call that wrote these bytes


class ObjectExists(Exception):
    """`put_file` found other bytes already under its key."""


class ObjectStream:
    """An open read of one object, or of a byte range of it: iterate the chunks once, then
    close (`async with` does). `first`..`last` are the bytes served, inclusive, as in HTTP."""

    def __init__(
        self,
        info: ObjectInfo,
        first: int,
        last: int,
        chunks: AsyncIterator[bytes],
        close: Callable[[], Awaitable[None]],
    ) -> None:
        self.info = info
        self.first = first
        self.last = last
        self._chunks = chunks
        self._close = close

    @property
    def length(self) -> int:
        """How many bytes this read serves."""
        return self.last - self.first + 1

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks

    async def read(self) -> bytes:
        """Every remaining byte of the range (for small objects)."""
        return b"".join([chunk async for chunk in self._chunks])

    async def aclose(self) -> None:
        """Release the connection or file behind the stream."""
        await self._close()

    async def __aenter__(self) -> ObjectStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class ObjectStore(Protocol):
    """Keyed bytes with conditional writes (see the module docstring for the contract)."""

    async def put_file(
        self, key: str, path: Path, *, sha256: str, content_type: str | None = None
    ) -> ObjectInfo:
        """Create `key` from a finished local file whose SHA-256 (hex) is `sha256`."""
        ...

    async def create(self, key: str, data: bytes) -> Stored:
        """Store `data` unless something is there; the stored bytes either way."""
        ...

    async def replace(self, key: str, data: bytes, etag: str) -> Stored | None:
        """Store `data` if the object's ETag is still `etag`; None if it changed or is gone."""
        ...

    async def read(self, key: str) -> Stored | None:
        """The whole object, or None."""
        ...

    async def stat(self, key: str) -> ObjectInfo | None:
        """Size, ETag and age of an object, or None."""
        ...

    async def open(self, key: str, first: int = 0, last: int | None = None) -> ObjectStream | None:
        """A stream of bytes `first`..`last` (inclusive; None: to the end), or None if the
        object is missing. RangeNotSatisfiable if `first` is past its end."""
        ...

    async def delete(self, key: str) -> None:
        """Remove one object (no error if it is gone)."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every object under `prefix`; how many."""
        ...

    def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        """Every object under `prefix` (the orphan sweep picks them by age)."""
        ...

    async def check(self) -> None:
        """Readiness: return if the store answers, StorageUnavailable if not."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


async def publish(
    store: ObjectStore, key: str, data: bytes, valid: Callable[[bytes], bool], *, rounds: int = 5
) -> Stored:
    """Publish a computed result under `key`; the bytes every caller must serve.

    The first writer wins and a valid winner is kept (every client gets the same bytes). An
    entry that does not validate (corrupt, or of an older analyzer version) is replaced, with
    `If-Match` on the ETag it was read with: if another writer changed it first, start over.
    """
    for _ in range(rounds):
        stored = await store.create(key, data)
        if stored.created or valid(stored.data):
            return stored
        replaced = await store.replace(key, data, stored.etag)
        if replaced is not None:
            return replaced
    raise StorageUnavailable(
        f"{key} kept changing while it was published; try again", headers={"Retry-After": "1"}
    )


async def delete_image(store: ObjectStore, image_id: str) -> int:
    """Remove every object of one image (its bytes and results); how many."""
    return await store.delete_prefix(image_prefix(image_id))
