"""app.db.job_hashes: contour jobs' PDQ hashes -- the first job of a content is kept, lookups
through the bands match owner, detector version and image size, newest first, and an owner's
hashes are erased and old ones purged (on SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.job_hashes import (
    JobHash,
    add_job_hash,
    erase_owner_job_hashes,
    near_duplicate_jobs,
    purge_job_hashes_before,
)
from app.services.images.perceptual import bands, probe_radius, probes

HASH = "f0" * 32
NEAR = "f1" + "f0" * 31  # 1 bit away, in the first band
FAR = "0f" * 32  # every bit differs
SIZE = (640, 480)
LOOKUP = [probes(band, probe_radius(8)) for band in bands(HASH)]


async def add(session: AsyncSession, key: str, owner: str, job: str, phash: str, **kw: object) -> None:
    fields: dict[str, object] = {"variant": "v1", "size": SIZE, **kw}
    await add_job_hash(
        session,
        content_key=key,
        owner=owner,
        job_id=job,
        perceptual_hash=phash,
        **fields,  # type: ignore[arg-type]
    )


async def near(session: AsyncSession, owner: str | None, **kw: object) -> list[JobHash]:
    fields: dict[str, object] = {"variant": "v1", "size": SIZE, "exclude": "original", **kw}
    return await near_duplicate_jobs(session, probes=LOOKUP, owner=owner, **fields)  # type: ignore[arg-type]


async def test_near_jobs_match_owner_variant_and_size_newest_first(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        await add(session, "original", "user:1", "job-0", HASH)
        await add(session, "near", "user:1", "job-1", NEAR)
        await add(session, "near", "user:1", "job-1b", HASH)  # same content again: the first is kept
        await add(session, "far", "user:1", "job-2", FAR)
        await add(session, "other-size", "user:1", "job-3", HASH, size=(480, 640))
        await add(session, "other-variant", "user:1", "job-4", HASH, variant="v2")
        await add(session, "theirs", "user:2", "job-5", HASH)
    async with sessions() as session:
        mine = await near(session, "user:1")
        anyone = await near(session, None)
    assert mine == [JobHash("near", "job-1", NEAR)]
    assert [row.content_key for row in anyone] == ["theirs", "near"]


async def test_an_owners_hashes_are_erased_and_old_ones_purged(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        await add(session, "a", "user:1", "job-1", NEAR)
        await add(session, "b", "user:2", "job-2", NEAR)
    async with sessions.begin() as session:
        assert await erase_owner_job_hashes(session, owner="user:1") == 1
        assert await erase_owner_job_hashes(session, owner="user:1") == 0
    async with sessions() as session:
        assert [row.content_key for row in await near(session, None)] == ["b"]
    async with sessions.begin() as session:
        assert await purge_job_hashes_before(session, before=0.0) == 0
        assert await purge_job_hashes_before(session, before=4e9) == 1
    async with sessions() as session:
        assert await near(session, None) == []
