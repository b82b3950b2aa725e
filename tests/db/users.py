"""A user row made directly through app.db.accounts, for tests of the services that read it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import accounts


async def add_user(
    sessions: async_sessionmaker[AsyncSession],
    *,
    credits: int = 0,
    is_admin: bool = False,
    created_at: datetime | None = None,
) -> int:
    """A new user (unique random name) with `credits`; its id."""
    name = f"u{uuid.uuid4().hex[:12]}"
    async with sessions.begin() as session:
        user = await accounts.add_user(
            session,
            username=name,
            username_key=name,
            password_hash="x",
            full_name=None,
            is_admin=is_admin,
            credits=credits,
            now=created_at or datetime.now(UTC),
        )
        return user.id
