"""The temp-file stock: files made ahead only while uploads overlap, none left when idle."""

from __future__ import annotations

import time
from pathlib import Path

from app.storage.atomic import TEMP_PREFIX
from app.storage.temp_stock import TempFileStock


def temp_files(directory: Path) -> set[Path]:
    return {p for p in directory.iterdir() if p.name.startswith(TEMP_PREFIX)}


def wait_for(condition, seconds: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_one_upload_at_a_time_makes_its_own_file_and_nothing_ahead(tmp_path: Path) -> None:
    stock = TempFileStock(tmp_path, 4)
    stock.enter()
    path, file = stock.take()
    assert file.write(b"abc") == 3 and path.read_bytes() == b"abc"
    time.sleep(0.05)
    assert stock.stocked == 0 and temp_files(tmp_path) == {path}
    file.close()
    path.unlink()
    stock.leave()
    stock.close()
    assert temp_files(tmp_path) == set()


def test_overlapping_uploads_take_ready_files_and_the_last_one_out_removes_the_rest(tmp_path: Path) -> None:
    stock = TempFileStock(tmp_path, 4)
    stock.enter()
    stock.enter()
    assert wait_for(lambda: stock.stocked == 4)
    ready = temp_files(tmp_path)
    path, file = stock.take()
    assert path in ready and path.stat().st_size == 0
    file.write(b"upload")
    assert wait_for(lambda: stock.stocked == 4), "the stock is topped up while uploads overlap"
    stock.leave()
    assert stock.stocked == 4  # one upload is still in flight
    stock.leave()
    assert stock.stocked == 0
    assert temp_files(tmp_path) == {path}, "only the file that was taken (its owner's) is left"
    assert path.read_bytes() == b"upload"
    file.close()
    stock.close()


def test_a_stock_of_zero_never_makes_files_ahead(tmp_path: Path) -> None:
    stock = TempFileStock(tmp_path, 0)
    for _ in range(3):
        stock.enter()
    time.sleep(0.05)
    assert stock.stocked == 0 and temp_files(tmp_path) == set()
    for _ in range(3):
        stock.leave()
    stock.close()


def test_close_stops_the_thread_and_removes_the_stock(tmp_path: Path) -> None:
    stock = TempFileStock(tmp_path, 3)
    stock.enter()
    stock.enter()
    assert wait_for(lambda: stock.stocked == 3)
    stock.close()
    assert stock.stocked == 0 and temp_files(tmp_path) == set()
