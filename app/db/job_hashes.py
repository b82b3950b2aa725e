"""The PDQ hashes of contour jobs' images (perceptual reuse of seed 004's jobs; keyword-only
repository functions)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.engine import insert_ignoring_conflicts, rowcount
from app.db.images import band_columns, band_match
from app.db.models import ContourJobHash


class JobHash(NamedTuple):
    """A job content's hash as one owner submitted it."""

    content_key: str
    job_id: str
    perceptual_hash: str


async def add_job_hash(
    session: AsyncSession,
    *,
    content_key: str,
    owner: str,
    job_id: str,
    variant: str,
    size: tuple[int, int],
    perceptual_hash: str,
) -> None:
    """Record the hash of `owner`'s job of `content_key` (kept: the first job of that content)."""
    values = {
        "content_key": content_key,
        "owner": owner,
        "job_id": job_id,
        "variant": variant,
        "width": size[0],
        "height": size[1],
        "perceptual_hash": perceptual_hash,
        "created_ts": time.time(),
        **band_columns(perceptual_hash),
    }
    await session.execute(insert_ignoring_conflicts(session, ContourJobHash, values))


async def near_duplicate_jobs(
    session: AsyncSession,
    *,
    probes: Sequence[Sequence[int]],
    owner: str | None,
    variant: str,
    size: tuple[int, int],
    exclude: str,
) -> list[JobHash]:
    """Job hashes with a band among the probed values, of `owner` (anyone's when None), the same
    detector version and image size, other than content `exclude`; newest first. The caller
    checks the full Hamming distance."""
    table = ContourJobHash
    where = [
        band_match(table, probes, owner),
        table.content_key != exclude,
        table.variant == variant,
        table.width == size[0],
        table.height == size[1],
    ]
    rows = await session.execute(
        select(table.content_key, table.job_id, table.perceptual_hash)
        .where(*where)
        .order_by(table.created_ts.desc())
    )
    return [JobHash(*row) for row in rows]


async def erase_owner_job_hashes(session: AsyncSession, *, owner: str) -> int:
    """Drop every job hash of `owner` (account erasure); how many."""
    return rowcount(await session.execute(delete(ContourJobHash).where(ContourJobHash.owner == owner)))


async def purge_job_hashes_before(session: AsyncSession, *, before: float) -> int:
    """Drop the job hashes recorded before `before` (epoch seconds; job retention); how many."""
    return rowcount(await session.execute(delete(ContourJobHash).where(ContourJobHash.created_ts < before)))
