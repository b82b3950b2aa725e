"""app.services.history: the buffered history writer (batches, flush before reads, retries while
the database cannot take the rows, the bounded buffer) over a real SQLite database."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import migrate
from app.db.engine import create_engine, session_factory
from app.db.history import HistoryFilter
from app.db.models import RequestLog
from app.services import history as history_module
from app.services.history import HistoryService

Sessions = async_sessionmaker[AsyncSession]


def row(i: int, **values: Any) -> dict[str, Any]:
    return {
        "request_type": "image",
        "route": "/forward",
        "principal": "user:1",
        "processing_time": 0.1,
        "status_code": 200,
        "result": f"r{i}",
        **values,
    }


@pytest.fixture
async def url(tmp_path: Path) -> str:
    database = f"sqlite+aiosqlite:///{tmp_path / 'service.db'}"
    await anyio.to_thread.run_sync(migrate.upgrade, database)
    return database


@pytest.fixture
async def sessions(url: str) -> AsyncIterator[Sessions]:
    engine = create_engine(url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


async def stored(sessions: Sessions) -> list[str | None]:
    async with sessions() as session:
        return list(await session.scalars(select(RequestLog.result).order_by(RequestLog.id)))


async def test_rows_wait_in_the_buffer_and_a_read_flushes_them_first(sessions: Sessions) -> None:
    service = HistoryService(sessions, flush_seconds=3600, batch_size=100)
    service.record(row(1))
    service.record(row(2, status_code=400, result=None))
    assert await stored(sessions) == []  # not written yet: recording never waits
    total, rows = await service.page(HistoryFilter(), limit=10, offset=0)
    assert total == 2 and [r.result for r in rows] == [None, "r1"]  # newest first
    stats = await service.stats(HistoryFilter(status_code=400))
    assert stats is not None


async def test_a_full_batch_wakes_the_writer(sessions: Sessions) -> None:
    service = HistoryService(sessions, flush_seconds=3600, batch_size=3)
    await service.start()
    try:
        for i in range(3):
            service.record(row(i))
        with anyio.fail_after(10):
            while len(await stored(sessions)) < 3:
                await asyncio.sleep(0.01)
        assert await stored(sessions) == ["r0", "r1", "r2"]
    finally:
        await service.stop()


async def test_stop_writes_what_is_left(sessions: Sessions) -> None:
    service = HistoryService(sessions, flush_seconds=3600, batch_size=2)
    await service.start()
    for i in range(5):
        service.record(row(i))
    await service.stop()
    assert await stored(sessions) == [f"r{i}" for i in range(5)]  # in order, over three batches


async def test_rows_the_database_refuses_are_kept_and_written_later(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'later.db'}"
    engine = create_engine(url)  # no tables yet: every write fails
    try:
        sessions = session_factory(engine)
        service = HistoryService(sessions, flush_seconds=3600, batch_size=2)
        for i in range(3):
            service.record(row(i))
        await service.flush()
        await service.flush()
        await anyio.to_thread.run_sync(migrate.upgrade, url)
        await service.flush()
        assert await stored(sessions) == ["r0", "r1", "r2"]
    finally:
        await engine.dispose()


async def test_a_full_buffer_drops_the_oldest_rows(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(history_module, "MAX_BUFFERED", 3)
    service = HistoryService(sessions, flush_seconds=3600, batch_size=100)
    logger = logging.getLogger("app.history")  # "app" may not propagate to the root: listen here
    logger.addHandler(caplog.handler)
    try:
        for i in range(5):
            service.record(row(i))
    finally:
        logger.removeHandler(caplog.handler)
    await service.flush()
    assert await stored(sessions) == ["r2", "r3", "r4"]
    assert "dropped the oldest row" in caplog.text


async def test_delete_and_erase_see_the_buffered_rows(sessions: Sessions) -> None:
    service = HistoryService(sessions, flush_seconds=3600, batch_size=100)
    service.record(row(1, principal="user:9", error_message="secret detail", status_code=422))
    service.record(row(2, principal="user:9"))
    service.record(row(3, principal="user:8"))
    assert await service.erase("user:9") == 2
    async with sessions() as session:
        kept = (await session.execute(select(RequestLog.principal, RequestLog.error_message))).all()
    assert sorted(kept, key=str) == sorted([(None, None), (None, None), ("user:8", None)], key=str)
    service.record(row(4, status_code=500))
    assert await service.delete(HistoryFilter(status_code=500)) == 1
    async with sessions() as session:
        assert (await session.execute(select(func.count()).select_from(RequestLog))).scalar_one() == 3


async def test_a_stop_cancelled_meanwhile_still_writes_the_buffer_and_stays_cancelled(
    sessions: Sessions,
) -> None:
    service = HistoryService(sessions, flush_seconds=3600, batch_size=100)
    await service.start()
    for i in range(3):
        service.record(row(i))
    stopping = asyncio.create_task(service.stop())
    await asyncio.sleep(0)  # it waits for the writer task to end
    stopping.cancel()  # a shut-down under a deadline
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert await stored(sessions) == ["r0", "r1", "r2"]
