"""app.db.secrets: a shared secret is set once by whoever comes first, on each back-end."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import secrets


async def get_or_create(sessions: async_sessionmaker[AsyncSession], name: str, candidate: str) -> str:
    async with sessions.begin() as session:
        return await secrets.get_or_create(session, name=name, candidate=candidate, now=datetime.now(UTC))


async def test_the_first_candidate_is_kept(sessions: async_sessionmaker[AsyncSession]) -> None:
    assert await get_or_create(sessions, "jwt", "first") == "first"
    assert await get_or_create(sessions, "jwt", "second") == "first"
    assert await get_or_create(sessions, "other", "own") == "own"


async def test_concurrent_callers_all_get_one_value(sessions: async_sessionmaker[AsyncSession]) -> None:
    values = await asyncio.gather(*(get_or_create(sessions, "shared", f"c{i}") for i in range(6)))
    assert len(set(values)) == 1 and values[0] in {f"c{i}" for i in range(6)}
