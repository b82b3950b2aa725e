"""The SQLite writer thread: concurrent rows share transactions, rows from worker threads
(`insert_now`) share its connection, each caller sees its own outcome, a cancelled caller's row is
committed all the same, and close writes what waits."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.db.sqlite_writer import SqliteBatchWriter


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "rows.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, value TEXT NOT NULL)")
    return path


@pytest.fixture
def writer(database: Path) -> Iterator[SqliteBatchWriter]:
    writer = SqliteBatchWriter(str(database), "INSERT INTO rows (id, value) VALUES (?, ?)")
    yield writer
    writer.close()


def _rows(database: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(database) as connection:
        return list(connection.execute("SELECT id, value FROM rows ORDER BY id"))


async def test_concurrent_rows_are_all_committed(writer: SqliteBatchWriter, database: Path) -> None:
    await asyncio.gather(*(writer.commit((i, f"v{i}")) for i in range(100)))
    assert _rows(database) == [(i, f"v{i}") for i in range(100)]


async def test_a_failing_row_fails_its_caller_and_the_writer_goes_on(
    writer: SqliteBatchWriter, database: Path
) -> None:
    await writer.commit((1, "a"))
    with pytest.raises(sqlite3.IntegrityError):
        await writer.commit((1, "again"))  # the same id
    with pytest.raises(sqlite3.IntegrityError):
        await writer.commit((2, None))  # NOT NULL
    await writer.commit((3, "c"))
    assert _rows(database) == [(1, "a"), (3, "c")]


async def test_a_cancelled_callers_row_is_committed_and_close_writes_what_waits(
    writer: SqliteBatchWriter, database: Path
) -> None:
    task = asyncio.create_task(writer.commit((7, "kept")))
    await asyncio.sleep(0)  # queued
    task.cancel()
    writer.close()  # writes what is waiting, then stops the thread
    assert _rows(database) == [(7, "kept")]
    await writer.commit((8, "restarted"))  # a later row starts the thread again
    assert _rows(database) == [(7, "kept"), (8, "restarted")]


async def test_loop_and_worker_thread_rows_are_all_committed(
    writer: SqliteBatchWriter, database: Path
) -> None:
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(4) as pool:
        from_threads = [loop.run_in_executor(pool, writer.insert_now, (n, "thread")) for n in range(0, 40, 2)]
        from_loop = [writer.commit((n, "loop")) for n in range(1, 40, 2)]
        await asyncio.gather(*from_threads, *from_loop)
    assert _rows(database) == [(n, "thread" if n % 2 == 0 else "loop") for n in range(40)]


async def test_a_refused_row_from_a_thread_raises_in_its_caller_and_leaves_the_connection_usable(
    writer: SqliteBatchWriter, database: Path
) -> None:
    writer.insert_now((1, "first"))
    with pytest.raises(sqlite3.IntegrityError):
        writer.insert_now((1, "again"))  # the primary key is taken
    with pytest.raises(sqlite3.IntegrityError):
        await writer.commit((1, "again, from the loop"))
    writer.insert_now((2, "after"))
    await writer.commit((3, "after, from the loop"))
    assert _rows(database) == [(1, "first"), (2, "after"), (3, "after, from the loop")]
