"""Image bytes and results in an object store (scale-out mode) against a real SeaweedFS: an
upload put once under its id, ranged reads, an analyzer's private temp copy, results published
first-writer-wins, an image's objects removed together, and the ages the orphan sweep reads."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.core.formats import FORMATS
from app.storage import objects
from app.storage.metadata import ImageMetadata
from app.storage.object_images import ObjectImages, object_result_key
from app.storage.s3 import S3ObjectStore
from tests.processes import free_port

BODY = b"\xff\xd8" + bytes(range(256)) * 8 + b"\xff\xd9"


@pytest.fixture
async def images(s3_server: dict[str, Any], tmp_path: Path) -> AsyncIterator[ObjectImages]:
    store = ObjectImages(S3ObjectStore(**s3_server, prefix=f"test-{uuid.uuid4().hex}"), tmp_path)
    await store.start()
    yield store
    await store.close()


async def _uploaded(images: ObjectImages, tmp_path: Path, body: bytes = BODY) -> ImageMetadata:
    meta = ImageMetadata.describe(
        image_id=str(uuid.uuid4()),
        filename="a.jpg",
        fmt=FORMATS["jpeg"],
        size_bytes=len(body),
        width=1,
        height=1,
        sha256=hashlib.sha256(body).hexdigest(),
    )
    temp = tmp_path / f"upload-{meta.image_id}"
    temp.write_bytes(body)
    await images.put(temp, meta)
    return meta


def test_result_names_map_to_the_images_result_objects() -> None:
    image_id = str(uuid.uuid4())
    assert object_result_key(f"{image_id}.json") == objects.result_key(image_id, "default.json")
    assert object_result_key(f"{image_id}/face-v2.json") == objects.result_key(image_id, "face-v2.json")


async def test_an_upload_is_stored_and_read_back_in_ranges(images: ObjectImages, tmp_path: Path) -> None:
    meta = await _uploaded(images, tmp_path)
    assert await images.exists(meta) and await images.has_image(meta.image_id)
    stream = await images.open(meta, 2, 9)
    assert stream is not None
    async with stream:
        assert b"".join([chunk async for chunk in stream]) == BODY[2:10]
    other = meta.model_copy(update={"image_id": str(uuid.uuid4())})
    assert not await images.exists(other) and not await images.has_image(other.image_id)
    assert await images.open(other) is None


async def test_an_analyzer_gets_a_private_copy_removed_afterwards(
    images: ObjectImages, tmp_path: Path
) -> None:
    meta = await _uploaded(images, tmp_path)
    async with images.local_copy(meta) as copy:
        assert copy is not None and copy.parent == tmp_path and copy.read_bytes() == BODY
    assert not copy.exists()
    async with images.local_copy(meta.model_copy(update={"image_id": str(uuid.uuid4())})) as missing:
        assert missing is None


async def test_results_are_published_once_and_a_valid_winner_is_kept(
    images: ObjectImages, tmp_path: Path
) -> None:
    meta = await _uploaded(images, tmp_path)
    name = f"{meta.image_id}.json"
    assert await images.read_result(name) is None
    assert await images.publish_result(name, b'{"v":1}', lambda body: True) == b'{"v":1}'
    assert await images.publish_result(name, b'{"v":2}', lambda body: True) == b'{"v":1}'  # the first wins
    # a stored result that no longer validates (an older analyzer version) is replaced
    assert await images.publish_result(name, b'{"v":3}', lambda body: body == b'{"v":3}') == b'{"v":3}'
    assert await images.read_result(name) == b'{"v":3}'


async def test_removing_an_image_removes_its_bytes_and_results(images: ObjectImages, tmp_path: Path) -> None:
    meta, kept = await _uploaded(images, tmp_path), await _uploaded(images, tmp_path)
    await images.publish_result(f"{meta.image_id}.json", b"{}", lambda body: True)
    await images.publish_result(f"{meta.image_id}/face.json", b"{}", lambda body: True)
    assert await images.remove(meta.image_id) == 3
    assert (
        not await images.has_image(meta.image_id)
        and await images.read_result(f"{meta.image_id}.json") is None
    )
    assert await images.has_image(kept.image_id)
    assert await images.remove(meta.image_id) == 0


async def test_ages_name_only_this_services_images(images: ObjectImages, tmp_path: Path) -> None:
    meta = await _uploaded(images, tmp_path)
    await images.store.create("images/not-an-id/x", b"x")  # not written by the service: left alone
    ages = await images.ages()
    assert list(ages) == [meta.image_id] and ages[meta.image_id] > 0


async def test_a_quiet_removal_on_a_store_that_is_down_raises_nothing(tmp_path: Path) -> None:
    down = S3ObjectStore(
        bucket="b",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        access_key_id="k",
        secret_access_key="s",
        connect_timeout=0.5,
        max_attempts=1,
    )
    async with down:
        images = ObjectImages(down, tmp_path)
        await images.remove_quietly(str(uuid.uuid4()))
