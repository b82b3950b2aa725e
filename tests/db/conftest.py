"""Database fixtures: every test runs on SQLite (a tmp file) and on PostgreSQL (a fresh database).

PostgreSQL needs a server: `TEST_POSTGRES_URL` (for example
`postgresql+asyncpg://postgres@127.0.0.1:5433/postgres`, as `.ci/run` starts one) names it and a
role that may create databases. Each test gets a database of its own with a random name, dropped
afterwards. Without the variable the PostgreSQL cases are skipped, unless `CI_REQUIRE_POSTGRES=1`,
where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import migrate
from app.db.engine import create_engine, session_factory

POSTGRES_URL_ENV = "TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "CI_REQUIRE_POSTGRES"


def postgres_server_url() -> str:
    """The server URL from the environment; skips (or fails, when required) without one."""
    url = os.environ.get(POSTGRES_URL_ENV, "").strip()
    if url:
        return url
    if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
        pytest.fail(f"{REQUIRE_POSTGRES_ENV}=1 but {POSTGRES_URL_ENV} is not set: no PostgreSQL to test on")
    pytest.skip(
        f"PostgreSQL: set {POSTGRES_URL_ENV} (e.g. postgresql+asyncpg://postgres@127.0.0.1:5433/postgres) "
        "to run the database tests on PostgreSQL too"
    )


async def _admin(server: str, statement: str) -> None:
    """Run `statement` outside a transaction (CREATE/DROP DATABASE) on the server's own database."""
    dsn = make_url(server).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of a new, empty database of each back-end (no migration applied)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'service.db'}"
        return
    server = postgres_server_url()
    name = f"test_{uuid.uuid4().hex}"
    await _admin(server, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        await _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def database_url(empty_database_url: str) -> str:
    """A new database of each back-end, migrated to head."""
    await anyio.to_thread.run_sync(migrate.upgrade, empty_database_url)
    return empty_database_url


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions over a migrated database of each back-end; the engine is disposed afterwards."""
    engine = create_engine(database_url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()
