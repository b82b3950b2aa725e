"""S3 object storage (aiobotocore, native asyncio): the `ObjectStore` of scale-out mode.

Objects live in one bucket under an optional prefix (`STORAGE_URL=s3://bucket/prefix`), in
the layout of `app.storage.objects`. Conditional writes carry the contract:
`If-None-Match: *` creates (first writer wins; a 412 reads the winner's bytes) and
`If-Match: <etag>` replaces. Every write sends its SHA-256 (`x-amz-checksum-sha256`), so
the server refuses bytes damaged on the way (`BadDigest`); the request itself is signed
without hashing the payload again, so a large upload is neither hashed twice nor read on
the event loop (aiohttp reads the file in a thread). Connection, timeouts and failures:
`app.storage.s3_client`.

Verified against SeaweedFS 4.48 (`weed mini`): 412 on `If-None-Match: *` over an existing
key and on a stale `If-Match` (also for a missing key), exactly one winner among 40
concurrent conditional creates (or 20 replaces) of one key, ranged GETs, `BadDigest` on a
wrong checksum, and batch deletes (`tests/storage/test_s3.py`).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from app.core.errors import RangeNotSatisfiable
from app.storage.objects import ObjectExists, ObjectInfo, ObjectStream, Stored
from app.storage.s3_client import (
    S3Connection,
    checksum,
    code_of,
    is_missing,
    object_info,
    parse_storage_url,
    status_of,
)

__all__ = ["S3ObjectStore", "parse_storage_url"]


class S3ObjectStore(S3Connection):
    """An `ObjectStore` in one S3 bucket (any S3 API: AWS, SeaweedFS, MinIO...); options,
    start and close as `S3Connection` has them."""

    # -- writes -------------------------------------------------------------------------

    async def put_file(
        self, key: str, path: Path, *, sha256: str, content_type: str | None = None
    ) -> ObjectInfo:
        """Create `key` from a finished local file (`If-None-Match: *`); the same bytes there
        already (a retried put) are success, other bytes raise ObjectExists."""
        extra = {"ContentType": content_type} if content_type else {}
        body = await asyncio.to_thread(open, path, "rb")
        try:
            size = (await asyncio.to_thread(os.fstat, body.fileno())).st_size
            with self.guard("put", key):
                try:
                    answer = await self.client.put_object(
                        Bucket=self.bucket,
                        Key=self.full_key(key),
                        Body=body,
                        IfNoneMatch="*",
                        ChecksumSHA256=checksum(sha256_hex=sha256),
                        Metadata={"sha256": sha256},
                        **extra,
                    )
                except ClientError as exc:
                    if status_of(exc) not in (409, 412):
                        raise
                    there = await self.head(key)
                    if there is not None and there.get("Metadata", {}).get("sha256") == sha256:
                        return object_info(key, there)
                    raise ObjectExists(f"other bytes are already stored under {key}") from exc
        finally:
            await asyncio.to_thread(body.close)
        return ObjectInfo(key, size, answer["ETag"], time.time())

    async def create(self, key: str, data: bytes) -> Stored:
        """Store `data` unless something is there (`If-None-Match: *`); the stored bytes."""
        for _ in range(5):
            with self.guard("create", key):
                try:
                    answer = await self.client.put_object(
                        Bucket=self.bucket,
                        Key=self.full_key(key),
                        Body=data,
                        IfNoneMatch="*",
                        ChecksumSHA256=checksum(data),
                    )
                    return Stored(data, answer["ETag"], created=True)
                except ClientError as exc:
                    if status_of(exc) == 409:  # a concurrent conditional write is in progress
                        continue
                    if status_of(exc) != 412:
                        raise
            winner = await self.read(key)
            if winner is not None:
                return winner
            # Created and deleted again in between (its image was deleted): try once more.
        raise self.unavailable("create", key, "the key kept changing")

    async def replace(self, key: str, data: bytes, etag: str) -> Stored | None:
        """Store `data` if the object's ETag is still `etag` (`If-Match`); None if not."""
        with self.guard("replace", key):
            try:
                answer = await self.client.put_object(
                    Bucket=self.bucket,
                    Key=self.full_key(key),
                    Body=data,
                    IfMatch=etag,
                    ChecksumSHA256=checksum(data),
                )
            except ClientError as exc:
                if status_of(exc) in (409, 412) or is_missing(exc):
                    return None
                raise
        return Stored(data, answer["ETag"])

    async def delete(self, key: str) -> None:
        """Remove one object (no error if it is gone)."""
        with self.guard("delete", key):
            try:
                await self.client.delete_object(Bucket=self.bucket, Key=self.full_key(key))
            except ClientError as exc:
                if not is_missing(exc):
                    raise

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every object under `prefix`: one listing page (`page_size` keys, at most
        1000) and one batch delete at a time; how many."""
        if not prefix.strip("/"):
            raise ValueError("refusing to delete every object: give a non-empty prefix")
        removed = 0
        with self.guard("delete", prefix):
            async for page in self.pages(prefix):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if not keys:
                    continue
                answer = await self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}
                )
                if answer.get("Errors"):
                    first = answer["Errors"][0]
                    raise self.unavailable("delete", prefix, f"{first.get('Code')} on {first.get('Key')}")
                removed += len(keys)
        return removed

    # -- reads --------------------------------------------------------------------------

    async def read(self, key: str) -> Stored | None:
        """The whole object and its ETag, or None."""
        with self.guard("read", key):
            try:
                answer = await self.client.get_object(Bucket=self.bucket, Key=self.full_key(key))
            except ClientError as exc:
                if is_missing(exc):
                    return None
                raise
            async with answer["Body"] as body:
                data = await body.read()
        return Stored(data, answer["ETag"])

    async def stat(self, key: str) -> ObjectInfo | None:
        """Size, ETag and age of an object, or None."""
        with self.guard("stat", key):
            head = await self.head(key)
        return None if head is None else object_info(key, head)

    async def open(self, key: str, first: int = 0, last: int | None = None) -> ObjectStream | None:
        """A stream of bytes `first`..`last` (inclusive; None: to the end), or None."""
        ranged = first > 0 or last is not None
        extra = {"Range": f"bytes={first}-{'' if last is None else last}"} if ranged else {}
        with self.guard("read", key):
            try:
                answer = await self.client.get_object(Bucket=self.bucket, Key=self.full_key(key), **extra)
            except ClientError as exc:
                if is_missing(exc):
                    return None
                if status_of(exc) != 416:
                    raise
                info = await self.stat(key)
                size = info.size if info else 0
                raise RangeNotSatisfiable(
                    f"The object has {size} bytes", headers={"Content-Range": f"bytes */{size}"}
                ) from None
        length = int(answer["ContentLength"])
        if "ContentRange" in answer:  # "bytes 1-2/4"
            span, _, total = answer["ContentRange"].removeprefix("bytes ").partition("/")
            start, _, end = span.partition("-")
            served_first, served_last, size = int(start), int(end), int(total)
        else:
            served_first, served_last, size = 0, length - 1, length
        body = answer["Body"]
        info = ObjectInfo(key, size, answer["ETag"], answer["LastModified"].timestamp())
        chunks = self._chunks(key, body)

        async def close() -> None:
            await chunks.aclose()
            body.close()

        return ObjectStream(info, served_first, served_last, chunks, close)

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        """Every object under `prefix` (keys relative to the store's prefix)."""
        with self.guard("list", prefix):
            async for page in self.pages(prefix):
                for item in page.get("Contents", []):
                    yield ObjectInfo(
                        item["Key"][len(self.prefix) :],
                        int(item["Size"]),
                        item["ETag"],
                        item["LastModified"].timestamp(),
                    )

    async def check(self) -> None:
        """Readiness: the bucket answers a signed HeadBucket; StorageUnavailable if not."""
        with self.guard("check", ""):
            try:
                await self.client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                raise self.unavailable("check", "", f"{status_of(exc)} {code_of(exc)}") from exc

    async def _chunks(self, key: str, body: Any) -> AsyncGenerator[bytes, None]:
        with self.guard("read", key):
            async for chunk in body.iter_chunks(self.chunk_size):
                yield chunk
