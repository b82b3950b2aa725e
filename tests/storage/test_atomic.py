"""app.storage.atomic: crash-safe writes (replace, create-once), temp file names and the sweep
of a dead process's temp files (cases beyond tests/storage/test_local.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.storage.atomic import (
    TEMP_PREFIX,
    atomic_create,
    atomic_write,
    is_stale_temp,
    sweep_temp_files,
    temp_path_for,
    unlink_quietly,
    write_and_sync,
)


def test_temp_names_are_unique_and_carry_this_pid(tmp_path: Path) -> None:
    names = {temp_path_for(tmp_path).name for _ in range(100)}
    assert len(names) == 100
    assert all(name.startswith(f"{TEMP_PREFIX}{os.getpid()}-") for name in names)
    assert temp_path_for(tmp_path).parent == tmp_path


def test_atomic_write_replaces_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "record.json"
    atomic_write(target, b"first")
    atomic_write(target, b"second, longer")
    assert target.read_bytes() == b"second, longer"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_atomic_write_into_a_missing_directory_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "missing" / "record.json", b"x")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_rename_removes_the_temp_file(tmp_path: Path) -> None:
    (tmp_path / "a-directory").mkdir()
    with pytest.raises(OSError):  # os.replace cannot put a file over a directory
        atomic_write(tmp_path / "a-directory", b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["a-directory"]


def test_temp_dir_puts_the_temp_file_elsewhere_on_the_same_file_system(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    target = tmp_path / "out" / "image.jpg"
    target.parent.mkdir()
    assert atomic_create(target, b"bytes", temp_dir=temp)
    atomic_write(tmp_path / "out" / "other.jpg", b"more", temp_dir=temp)
    assert target.read_bytes() == b"bytes"
    assert list(temp.iterdir()) == []


def test_atomic_create_keeps_the_first_bytes(tmp_path: Path) -> None:
    target = tmp_path / "image.jpg"
    assert atomic_create(target, b"winner")
    assert not atomic_create(target, b"loser")
    assert target.read_bytes() == b"winner"
    assert [p.name for p in tmp_path.iterdir()] == ["image.jpg"]


def test_write_and_sync_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "once"
    write_and_sync(path, b"a" * 100_000)
    assert path.read_bytes() == b"a" * 100_000
    with pytest.raises(FileExistsError):
        write_and_sync(path, b"b")
    assert path.stat().st_size == 100_000


def test_unlink_quietly_ignores_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    unlink_quietly(path)
    unlink_quietly(path)
    assert not path.exists()


@pytest.mark.parametrize(
    ("name", "stale"),
    [
        ("image.jpg", False),  # not a temp file
        (f"{TEMP_PREFIX}notapid-abc", True),  # ours by name, no live owner
        (f"{TEMP_PREFIX}0-abc", True),
        (f"{TEMP_PREFIX}{os.getpid()}-abc", True),  # our own pid at start-up: a dead predecessor's
        (f"{TEMP_PREFIX}1-abc", False),  # pid 1 is alive (init)
    ],
)
def test_which_temp_names_are_stale(name: str, stale: bool) -> None:
    assert is_stale_temp(name) is stale


def test_sweep_of_a_missing_directory_is_nothing(tmp_path: Path) -> None:
    assert sweep_temp_files(tmp_path / "missing") == 0


def test_sweep_removes_only_stale_temp_files(tmp_path: Path) -> None:
    (tmp_path / f"{TEMP_PREFIX}999999999-x").write_bytes(b"dead")
    (tmp_path / f"{TEMP_PREFIX}1-x").write_bytes(b"live peer")
    (tmp_path / "kept.jpg").write_bytes(b"published")
    assert sweep_temp_files(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{TEMP_PREFIX}1-x", "kept.jpg"]
