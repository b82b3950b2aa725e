"""ImageService: the catalog over the bytes; visibility by owner, listings, deletes, caching."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.errors import ImageNotFound
from app.services.accounts.principals import Principal
from tests.factories import CountingSkin, jpeg_bytes
from tests.services.conftest import publish, running

ALICE = Principal(id="user:1", kind="user", user_id=1)
BOB = Principal(id="user:2", kind="user", user_id=2)
ADMIN = Principal(id="user:3", kind="admin", user_id=3)


async def test_only_the_owner_and_admins_see_an_image(settings) -> None:
    async with running(settings, CountingSkin()) as services:
        image_id = (await publish(services, jpeg_bytes(), owner=ALICE)).image_id
        assert (await services.images.get(image_id, ALICE)).owner == ALICE.id
        assert (await services.images.get(image_id, ADMIN)).owner == ALICE.id
        for attempt in (services.images.get, services.images.delete, services.analysis.analyze):
            with pytest.raises(ImageNotFound):
                await attempt(image_id, BOB)
        assert services.images.peek(image_id, BOB) is None
        assert services.images.peek(image_id, ALICE) is not None


async def test_listing_is_per_owner_newest_first_and_paginated(settings) -> None:
    async with running(settings, CountingSkin()) as services:
        mine = [
            (await publish(services, jpeg_bytes(color=(i, 0, 0)), owner=ALICE)).image_id for i in range(5)
        ]
        await publish(services, jpeg_bytes(), owner=BOB)
        total, first = await services.images.list(ALICE, limit=2, offset=0)
        _, rest = await services.images.list(ALICE, limit=10, offset=2)
        everyone, _ = await services.images.list(ADMIN, limit=1, offset=0)
    assert total == 5 and everyone == 6
    assert [m.image_id for m in first + rest] == mine[::-1]


async def test_delete_removes_row_bytes_and_analyses(settings, data_dir: Path) -> None:
    async with running(settings, CountingSkin()) as services:
        image_id = (await publish(services, jpeg_bytes())).image_id
        anyone = Principal(id="anonymous", kind="anonymous")
        await services.analysis.analyze(image_id, anyone)
        await services.images.delete(image_id, anyone)
        with pytest.raises(ImageNotFound):
            await services.images.get(image_id, anyone)
    assert not any((data_dir / "images").iterdir()) and not any((data_dir / "analysis").iterdir())


async def test_bytes_deleted_by_another_worker_end_the_cached_entry(settings, data_dir: Path) -> None:
    async with running(settings, CountingSkin()) as services:
        outcome = await publish(services, jpeg_bytes(), owner=ALICE)
        assert services.images.peek(outcome.image_id, ALICE) is not None
        (data_dir / "images" / f"{outcome.image_id}.jpg").unlink()  # as another worker's delete does
        assert services.images.peek(outcome.image_id, ALICE) is None
        with pytest.raises(ImageNotFound):
            await services.images.get(outcome.image_id, ALICE)


async def test_delete_owned_removes_only_that_owner(settings, data_dir: Path) -> None:
    async with running(settings, CountingSkin()) as services:
        mine = [(await publish(services, jpeg_bytes(), owner=ALICE)).image_id for _ in range(3)]
        kept = (await publish(services, jpeg_bytes(), owner=BOB)).image_id
        assert sorted(await services.images.delete_owned(ALICE.id)) == sorted(mine)
        assert await services.images.delete_owned(ALICE.id) == []
        assert (await services.images.list(ADMIN, 10, 0))[0] == 1
    assert [p.name for p in (data_dir / "images").iterdir()] == [f"{kept}.jpg"]


async def test_the_catalog_cache_is_bounded_and_evicted_images_are_read_from_the_database(
    make_settings,
) -> None:
    async with running(make_settings(image_cache_entries=2), CountingSkin()) as services:
        ids = [(await publish(services, jpeg_bytes(color=(i, 0, 0)), owner=ALICE)).image_id for i in range(3)]
        assert services.images.peek(ids[0], ALICE) is None  # evicted: the oldest of three
        assert [services.images.peek(i, ALICE) is not None for i in ids[1:]] == [True, True]
        assert (await services.images.get(ids[0], ALICE)).metadata.image_id == ids[0]
        with pytest.raises(ImageNotFound):
            await services.images.get(ids[0], BOB)
