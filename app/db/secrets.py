"""Shared secrets (keyword-only repository functions): set once by whoever comes first."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.engine import insert_ignoring_conflicts
from app.db.models import AppSecret


async def get_or_create(session: AsyncSession, *, name: str, candidate: str, now: datetime) -> str:
    """The secret `name`: `candidate` if none was stored yet, else the stored one (every
    caller gets the same value: `INSERT ... ON CONFLICT DO NOTHING`, then read)."""
    await session.execute(
        insert_ignoring_conflicts(session, AppSecret, {"name": name, "value": candidate, "created_at": now})
    )
    row = await session.execute(select(AppSecret.value).where(AppSecret.name == name))
    return str(row.scalar_one())
