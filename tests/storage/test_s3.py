"""The S3 object store against a real SeaweedFS (`weed mini`).

The server: `TEST_S3_ENDPOINT_URL` (with `TEST_S3_ACCESS_KEY_ID`, `TEST_S3_SECRET_ACCESS_KEY`,
`TEST_S3_BUCKET`; `.ci/run` starts one), else one this session starts in a temp dir
(`tests/seaweedfs.py`). Without a `weed` binary the tests skip, unless `CI_REQUIRE_S3=1`,
where they fail. Every test works under a prefix of its own in the shared bucket.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from app.core.errors import RangeNotSatisfiable, StorageUnavailable
from app.storage.objects import (
    ObjectExists,
    delete_image,
    image_key,
    job_key,
    publish,
    result_key,
)
from app.storage.s3 import S3ObjectStore


@pytest.fixture
async def make_store(s3_server: dict[str, Any]) -> AsyncIterator[Callable[..., Awaitable[S3ObjectStore]]]:
    """Start stores (each its own client and connection pool, like replicas) under one
    prefix that is this test's alone; all are closed afterwards."""
    prefix = f"test-{uuid.uuid4().hex}"
    stores: list[S3ObjectStore] = []

    async def _make(**overrides: Any) -> S3ObjectStore:
        store = S3ObjectStore(**{**s3_server, "prefix": prefix, **overrides})
        await store.start()
        stores.append(store)
        return store

    yield _make
    for store in stores:
        await store.close()


@pytest.fixture
async def store(make_store: Callable[..., Awaitable[S3ObjectStore]]) -> S3ObjectStore:
    return await make_store()


def new_image_id() -> str:
    return str(uuid.uuid4())


async def test_concurrent_creates_of_one_key_have_one_winner_and_all_get_its_bytes(
    make_store: Callable[..., Awaitable[S3ObjectStore]],
) -> None:
    replicas = [await make_store() for _ in range(4)]
    key = result_key(new_image_id(), "x.json")
    # 40 writers of different bytes over 4 clients, as large enough bodies to overlap in flight.
    bodies = [bytes([i]) * 100_000 for i in range(40)]
    outcomes = await asyncio.gather(
        *(replicas[i % len(replicas)].create(key, body) for i, body in enumerate(bodies))
    )
    winners = [o for o in outcomes if o.created]
    assert len(winners) == 1
    assert {o.data for o in outcomes} == {winners[0].data}
    assert {o.etag for o in outcomes} == {winners[0].etag}
    stored = await replicas[1].read(key)
    assert stored is not None and stored.data == winners[0].data and stored.etag == winners[0].etag


async def test_replace_needs_the_etag_of_what_is_stored(store: S3ObjectStore) -> None:
    key = result_key(new_image_id(), "a.json")
    first = await store.create(key, b"v1")
    assert first.created

    assert await store.replace(key, b"stale", '"0123456789abcdef0123456789abcdef"') is None
    assert (await store.read(key)).data == b"v1"  # type: ignore[union-attr]

    second = await store.replace(key, b"v2", first.etag)
    assert second is not None and second.data == b"v2" and second.etag != first.etag
    assert await store.replace(key, b"v3", first.etag) is None  # the ETag read before v2
    assert (await store.read(key)).data == b"v2"  # type: ignore[union-attr]
    assert await store.replace(result_key(new_image_id(), "gone.json"), b"x", second.etag) is None


async def test_concurrent_replaces_of_one_version_have_one_winner(store: S3ObjectStore) -> None:
    key = job_key("results", "k" * 64)
    first = await store.create(key, b"corrupt")
    outcomes = await asyncio.gather(*(store.replace(key, bytes([i]) * 50_000, first.etag) for i in range(20)))
    won = [o for o in outcomes if o is not None]
    assert len(won) == 1
    assert (await store.read(key)).data == won[0].data  # type: ignore[union-attr]


async def test_publish_keeps_a_valid_winner_and_replaces_an_invalid_one(
    make_store: Callable[..., Awaitable[S3ObjectStore]],
) -> None:
    replicas = [await make_store() for _ in range(3)]
    key = result_key(new_image_id(), "r.json")

    def valid(data: bytes) -> bool:
        return data.startswith(b"{")

    assert (await publish(replicas[0], key, b'{"n":1}', valid)).created
    again = await publish(replicas[1], key, b'{"n":2}', valid)
    assert again.data == b'{"n":1}' and not again.created

    # A corrupt entry: concurrent publishers of different valid bytes all end with one of them.
    broken = await replicas[0].replace(key, b"garbage", again.etag)
    assert broken is not None
    outcomes = await asyncio.gather(
        *(publish(replicas[i % 3], key, b'{"n":%d}' % (10 + i), valid) for i in range(12))
    )
    assert len({o.data for o in outcomes}) == 1
    assert valid(outcomes[0].data)
    assert (await replicas[2].read(key)).data == outcomes[0].data  # type: ignore[union-attr]


async def test_put_file_creates_an_image_once(store: S3ObjectStore, tmp_path: Path) -> None:
    upload = tmp_path / "upload"
    data = os.urandom(300_000)
    upload.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    key = image_key(new_image_id(), "png")

    info = await store.put_file(key, upload, sha256=sha, content_type="image/png")
    assert info.size == len(data)
    assert (await store.read(key)).data == data  # type: ignore[union-attr]
    # A retried put of the same bytes (its first answer lost) is success, not a conflict.
    again = await store.put_file(key, upload, sha256=sha, content_type="image/png")
    assert again.etag == info.etag and again.size == len(data)

    other = tmp_path / "other"
    other.write_bytes(b"other bytes")
    with pytest.raises(ObjectExists):
        await store.put_file(key, other, sha256=hashlib.sha256(b"other bytes").hexdigest())
    assert (await store.read(key)).data == data  # type: ignore[union-attr]


async def test_put_file_with_bytes_that_do_not_match_their_checksum_stores_nothing(
    store: S3ObjectStore, tmp_path: Path
) -> None:
    upload = tmp_path / "upload"
    upload.write_bytes(b"the bytes on disk")
    key = image_key(new_image_id(), "jpg")
    with pytest.raises(StorageUnavailable):
        await store.put_file(key, upload, sha256=hashlib.sha256(b"what was hashed").hexdigest())
    assert await store.stat(key) is None


async def test_delete_image_removes_every_object_of_that_image_only(
    make_store: Callable[..., Awaitable[S3ObjectStore]],
) -> None:
    store = await make_store(page_size=10)  # several listing pages and batch deletes
    doomed, kept = new_image_id(), new_image_id()
    await store.create(image_key(doomed, "png"), b"image")
    for i in range(24):
        await store.create(result_key(doomed, f"{doomed}.a{i}.json"), b"{}")
    await store.create(image_key(kept, "png"), b"other image")
    await store.create(result_key(kept, f"{kept}.json"), b"{}")
    await store.create(job_key("results", "j1"), b"job output")

    assert await delete_image(store, doomed) == 25
    assert [o.key async for o in store.list(f"images/{doomed}/")] == []
    assert await store.read(image_key(doomed, "png")) is None
    remaining = sorted([o.key async for o in store.list("")])
    assert remaining == sorted(
        [image_key(kept, "png"), result_key(kept, f"{kept}.json"), job_key("results", "j1")]
    )
    assert await delete_image(store, doomed) == 0
    with pytest.raises(ValueError):
        await store.delete_prefix("")


async def test_ranged_reads_serve_the_bytes_asked_for_with_the_etag(
    make_store: Callable[..., Awaitable[S3ObjectStore]],
) -> None:
    store = await make_store(chunk_size=64)
    data = os.urandom(1000)
    key = image_key(new_image_id(), "webp")
    created = await store.create(key, data)
    info = await store.stat(key)
    assert info is not None and info.size == 1000 and info.etag == created.etag

    async with await store.open(key, 100, 199) as stream:  # type: ignore[union-attr]
        chunks = [chunk async for chunk in stream]
    assert b"".join(chunks) == data[100:200] and len(chunks) > 1
    assert (stream.first, stream.last, stream.length) == (100, 199, 100)
    assert stream.info.size == 1000 and stream.info.etag == created.etag

    async with await store.open(key, 900) as stream:  # type: ignore[union-attr]
        assert await stream.read() == data[900:] and stream.last == 999
    async with await store.open(key, 990, 5000) as stream:  # type: ignore[union-attr]
        assert await stream.read() == data[990:] and (stream.first, stream.last) == (990, 999)
    async with await store.open(key) as stream:  # type: ignore[union-attr]
        assert await stream.read() == data and (stream.first, stream.last) == (0, 999)
    # Closing a stream before its end releases it; the store keeps serving.
    stream = await store.open(key, 0, 999)
    assert stream is not None
    await stream.aclose()

    with pytest.raises(RangeNotSatisfiable) as refused:
        await store.open(key, 1000)
    assert refused.value.headers["Content-Range"] == "bytes */1000"
    assert await store.open(image_key(new_image_id(), "webp")) is None
    assert await store.stat(image_key(new_image_id(), "webp")) is None


async def test_a_wrong_bucket_or_wrong_credentials_fail_the_readiness_check(
    make_store: Callable[..., Awaitable[S3ObjectStore]],
) -> None:
    await (await make_store()).check()
    with pytest.raises(StorageUnavailable):
        await (await make_store(bucket=f"missing-{uuid.uuid4().hex[:8]}")).check()
    wrong_key = await make_store(secret_access_key="not-the-secret")
    with pytest.raises(StorageUnavailable):
        await wrong_key.check()
    with pytest.raises(StorageUnavailable):
        await wrong_key.create(job_key("inputs", "x"), b"x")
