"""Group commit: concurrent rows share transactions; each caller sees its own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.formats import FORMATS
from app.db import images as catalog
from app.db.group_commit import GroupCommit
from app.db.models import Image
from app.storage.metadata import ImageMetadata


def meta(i: int) -> ImageMetadata:
    return ImageMetadata.describe(
        image_id=f"00000000-0000-4000-8000-{i:012d}",
        filename=None,
        fmt=FORMATS["jpeg"],
        size_bytes=i,
        width=1,
        height=1,
        sha256="x",
    )


async def test_concurrent_rows_share_transactions(sessions: async_sessionmaker[AsyncSession]) -> None:
    transactions: list[int] = []

    async def write(session: AsyncSession, rows: Sequence[tuple[ImageMetadata, str]]) -> None:
        transactions.append(len(rows))
        await catalog.add_images(session, images=rows)

    group: GroupCommit[tuple[ImageMetadata, str]] = GroupCommit(sessions, write)
    await asyncio.gather(*(group.commit((meta(i), "anonymous")) for i in range(50)))
    async with sessions() as session:
        assert (await session.execute(select(func.count()).select_from(Image))).scalar_one() == 50
    assert sum(transactions) == 50 and len(transactions) < 50


async def test_a_failed_transaction_fails_only_its_rows(sessions: async_sessionmaker[AsyncSession]) -> None:
    group: GroupCommit[tuple[ImageMetadata, str]] = GroupCommit(
        sessions, lambda session, rows: catalog.add_images(session, images=rows)
    )
    await group.commit((meta(1), "anonymous"))
    with pytest.raises(Exception):  # noqa: B017 - the back-end's own IntegrityError
        await group.commit((meta(1), "anonymous"))  # the same id again
    await group.commit((meta(2), "anonymous"))  # the writer goes on
