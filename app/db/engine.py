"""The async engine and session factory, built from settings at start-up (never at import).

SQLite (the default, `aiosqlite`) runs in WAL mode with `synchronous=NORMAL` (a commit is
durable against a crash of the process; the WAL is fsynced at checkpoints), a busy timeout
so that several worker processes can share the file, and foreign keys on.

PostgreSQL (`asyncpg`) may go away and come back: a connection attempt gives up after
`connect_timeout` and raises `DatabaseUnavailable`; a pooled connection is pinged before use
(`pool_pre_ping`), and one that broke mid-statement is invalidated, so the pool reconnects by
itself once the server is back. `is_outage` tells such failures from bugs, for the one place
that maps exceptions to HTTP (503 `database_unavailable`, never 500).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult, Dialect, Result, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from app.core.errors import DatabaseUnavailable

SQLITE_BUSY_TIMEOUT_MS = 30_000
DEFAULT_CONNECT_TIMEOUT = 5.0


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _guarded_connect(dialect: Dialect, _record: Any, cargs: tuple[Any, ...], cparams: dict[str, Any]) -> Any:
    """Open a server connection; any failure to do so (refused, timed out, server starting or
    shutting down, too many clients) is a `DatabaseUnavailable`."""
    try:
        return dialect.connect(*cargs, **cparams)
    except Exception as exc:
        raise DatabaseUnavailable(f"Cannot connect to the database ({type(exc).__name__})") from exc


def create_engine(url: str, *, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> AsyncEngine:
    """An async engine for `url` (SQLite files get their directory created)."""
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            from pathlib import Path

            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_async_engine(
        url,
        pool_size=10,
        max_overflow=10,
        pool_pre_ping=True,
        connect_args={"timeout": connect_timeout},
    )
    event.listen(engine.sync_engine, "do_connect", _guarded_connect)
    return engine


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` means the database server is unreachable (rather than a bad statement):
    a failed connection attempt, a connection lost mid-statement, no pooled connection in time."""
    if isinstance(exc, DatabaseUnavailable | sa_exc.TimeoutError):
        return True
    return isinstance(exc, sa_exc.DBAPIError) and bool(exc.connection_invalidated)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


def insert_ignoring_conflicts(
    session: AsyncSession, table: Any, values: Sequence[dict[str, Any]] | dict[str, Any]
) -> Any:
    """`INSERT ... ON CONFLICT DO NOTHING` for the session's back-end (not yet executed)."""
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).values(values).on_conflict_do_nothing()


def rowcount(result: Result[Any]) -> int:
    """Rows an INSERT, UPDATE or DELETE touched: `session.execute` returns a CursorResult for
    those, typed as the general Result."""
    return cast(CursorResult[Any], result).rowcount
