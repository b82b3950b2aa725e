"""The image catalog's repository on each back-end (SQLite and PostgreSQL): rows round-trip to
metadata, pages newest first, an owner's rows are deleted exactly, and perceptual hashes are
found again through their indexed bands."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.formats import FORMATS
from app.db import images as catalog
from app.db.models import PERCEPTUAL_BANDS
from app.services.images.perceptual import bands, probe_radius, probes
from app.storage.metadata import ImageMetadata

HASH = "f0" * 32  # 256 bits as hex
NEAR = "f1" + "f0" * 31  # 1 bit away, in the first band
FAR = "0f" * 32  # every bit differs


def meta(created_at: float, *, perceptual_hash: str | None = None, fmt: str = "jpeg") -> ImageMetadata:
    return ImageMetadata.describe(
        image_id=str(uuid.uuid4()),
        filename="photo.jpg",
        fmt=FORMATS[fmt],
        size_bytes=1536,
        width=40,
        height=30,
        sha256="ab" * 32,
        created_at=created_at,
        upright=(30, 40),
        perceptual_hash=perceptual_hash,
    )


async def test_a_row_round_trips_to_its_metadata(sessions: async_sessionmaker[AsyncSession]) -> None:
    image = meta(1_700_000_000.25, perceptual_hash=HASH)
    async with sessions.begin() as session:
        await catalog.add_images(session, images=[(image, "key:a")])
    async with sessions() as session:
        row = await catalog.get_image(session, image_id=image.image_id)
        assert row is not None and catalog.to_metadata(row) == image
        assert await catalog.get_image(session, image_id=str(uuid.uuid4())) is None
    reads = catalog.autocommit(sessions)
    assert await catalog.owner_of(reads, image_id=image.image_id) == "key:a"
    assert await catalog.owner_of(reads, image_id=str(uuid.uuid4())) is None


async def test_rows_written_through_the_row_writer_are_read_back(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    writer = catalog.row_writer(database_url, sessions)
    images = [meta(1_700_000_000.0 + i) for i in range(4)]
    try:
        for image in images[:3]:
            await writer.commit(image, "anonymous")
        if writer.commit_now is None:  # group commit: no blocking path from a worker thread
            await writer.commit(images[3], "anonymous")
        else:  # SQLite: the upload's worker thread commits on the writer's connection
            await asyncio.to_thread(writer.commit_now, images[3], "anonymous")
    finally:
        writer.close()
    async with sessions() as session:
        total, rows = await catalog.list_images(session, owner="anonymous", limit=10, offset=0)
    assert total == 4 and [catalog.to_metadata(row) for row in rows] == images[::-1]


async def test_pages_are_newest_first_and_per_owner(sessions: async_sessionmaker[AsyncSession]) -> None:
    mine = [meta(1_700_000_000.0 + i) for i in range(5)]
    theirs = [meta(1_700_000_100.0)]
    async with sessions.begin() as session:
        await catalog.add_images(
            session, images=[(m, "user:1") for m in mine] + [(t, "user:2") for t in theirs]
        )
    async with sessions() as session:
        total, page = await catalog.list_images(session, owner="user:1", limit=2, offset=1)
        assert total == 5 and [row.image_id for row in page] == [mine[3].image_id, mine[2].image_id]
        total, page = await catalog.list_images(session, owner=None, limit=1, offset=0)
        assert total == 6 and page[0].image_id == theirs[0].image_id


async def test_an_owners_rows_are_deleted_exactly(sessions: async_sessionmaker[AsyncSession]) -> None:
    mine = [meta(1_700_000_000.0, fmt="png"), meta(1_700_000_001.0)]
    theirs = meta(1_700_000_002.0)
    async with sessions.begin() as session:
        await catalog.add_images(session, images=[(m, "user:1") for m in mine] + [(theirs, "user:2")])
    async with sessions.begin() as session:
        deleted = await catalog.delete_owned(session, owner="user:1")
    assert sorted(deleted) == sorted([(mine[0].image_id, "png"), (mine[1].image_id, "jpeg")])
    ids = [m.image_id for m in mine] + [theirs.image_id] + [str(uuid.uuid4()) for _ in range(600)]
    async with sessions() as session:
        assert await catalog.known_ids(session, image_ids=ids) == {theirs.image_id}  # in chunks of 500
    async with sessions.begin() as session:
        assert await catalog.delete_image(session, image_id=theirs.image_id)
        assert not await catalog.delete_image(session, image_id=theirs.image_id)


async def test_near_duplicates_are_found_through_their_bands(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    assert len(bands(HASH)) == PERCEPTUAL_BANDS
    original, near, far, later = (
        meta(1.0e9, perceptual_hash=HASH),
        meta(2.0e9),
        meta(3.0e9, perceptual_hash=FAR),
        meta(4.0e9),
    )
    async with sessions.begin() as session:
        await catalog.add_images(
            session, images=[(original, "user:1"), (near, "user:1"), (far, "user:1"), (later, "user:2")]
        )
        # a hash computed after the upload is stored once, bands included
        await catalog.set_perceptual_hash(session, image_id=near.image_id, perceptual_hash=NEAR)
        await catalog.set_perceptual_hash(session, image_id=near.image_id, perceptual_hash=FAR)
        await catalog.set_perceptual_hash(session, image_id=later.image_id, perceptual_hash=HASH)
    looked_up = [probes(band, probe_radius(8)) for band in bands(HASH)]
    async with sessions() as session:
        mine = await catalog.near_duplicates(
            session, probes=looked_up, owner="user:1", exclude=original.image_id
        )
        anyone = await catalog.near_duplicates(
            session, probes=looked_up, owner=None, exclude=original.image_id
        )
    assert [(row.image_id, row.perceptual_hash) for row in mine] == [(near.image_id, NEAR)]
    assert {row.image_id for row in anyone} == {near.image_id, later.image_id}
    assert (mine[0].upright_width, mine[0].upright_height, mine[0].created_ts) == (30, 40, 2.0e9)
