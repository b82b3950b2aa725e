"""SqliteBatchWriter: rows from the event loop (batched by the writer thread) and from worker
threads (`insert_now`) share one connection; each caller sees its own outcome."""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.db.sqlite_writer import SqliteBatchWriter


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "rows.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE rows (n INTEGER PRIMARY KEY, source TEXT NOT NULL)")
    return path


def stored(database: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(database) as db:
        return list(db.execute("SELECT n, source FROM rows ORDER BY n"))


async def test_loop_and_worker_thread_rows_are_all_committed(database: Path) -> None:
    writer = SqliteBatchWriter(str(database), "INSERT INTO rows VALUES (?, ?)")
    loop = asyncio.get_running_loop()
    try:
        with ThreadPoolExecutor(4) as pool:
            from_threads = [
                loop.run_in_executor(pool, writer.insert_now, (n, "thread")) for n in range(0, 40, 2)
            ]
            from_loop = [writer.commit((n, "loop")) for n in range(1, 40, 2)]
            await asyncio.gather(*from_threads, *from_loop)
    finally:
        writer.close()
    assert stored(database) == [(n, "thread" if n % 2 == 0 else "loop") for n in range(40)]


async def test_a_refused_row_raises_in_its_caller_and_leaves_the_connection_usable(database: Path) -> None:
    writer = SqliteBatchWriter(str(database), "INSERT INTO rows VALUES (?, ?)")
    try:
        writer.insert_now((1, "first"))
        with pytest.raises(sqlite3.IntegrityError):
            writer.insert_now((1, "again"))  # the primary key is taken
        with pytest.raises(sqlite3.IntegrityError):
            await writer.commit((1, "again, from the loop"))
        writer.insert_now((2, "after"))
        await writer.commit((3, "after, from the loop"))
    finally:
        writer.close()
    assert stored(database) == [(1, "first"), (2, "after"), (3, "after, from the loop")]
