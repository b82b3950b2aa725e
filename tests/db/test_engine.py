"""The engine: SQLite files set up for several processes (WAL, busy timeout, foreign keys), a
PostgreSQL server that cannot be reached is `DatabaseUnavailable` within the connect timeout,
conflicting inserts are ignored on each back-end."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.errors import DatabaseUnavailable
from app.db.engine import create_engine, insert_ignoring_conflicts, is_outage, is_sqlite, rowcount
from app.db.models import AppSecret
from tests.processes import free_port


async def test_a_sqlite_file_is_created_with_its_directory_and_set_up_for_sharing(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'deep' / 'dir' / 'service.db'}"
    assert is_sqlite(url) and not is_sqlite("postgresql+asyncpg://u@h/db")
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            pragmas = [
                (await connection.execute(text(f"PRAGMA {name}"))).scalar()
                for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            ]
    finally:
        await engine.dispose()
    assert pragmas == ["wal", 1, 30_000, 1]  # synchronous 1 = NORMAL
    assert (tmp_path / "deep" / "dir" / "service.db").exists()


async def test_an_unreachable_server_is_database_unavailable_within_the_timeout() -> None:
    engine = create_engine(f"postgresql+asyncpg://u@127.0.0.1:{free_port()}/db", connect_timeout=1.0)
    try:
        # bounded by the connect timeout, not asyncpg's default (60 s) or a hang
        with anyio.fail_after(30), pytest.raises(DatabaseUnavailable) as failed:
            async with engine.connect():
                pass
    finally:
        await engine.dispose()
    assert is_outage(failed.value)
    assert not is_outage(ValueError("a bug"))


async def test_conflicting_inserts_are_ignored(sessions: async_sessionmaker[AsyncSession]) -> None:
    row = {"name": "k", "value": "first", "created_at": datetime.now(UTC)}
    async with sessions.begin() as session:
        assert rowcount(await session.execute(insert_ignoring_conflicts(session, AppSecret, row))) == 1
        again = {**row, "value": "second"}
        assert rowcount(await session.execute(insert_ignoring_conflicts(session, AppSecret, again))) == 0
    async with sessions() as session:
        assert (await session.get(AppSecret, "k")).value == "first"  # type: ignore[union-attr]
