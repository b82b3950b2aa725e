"""Crash-safe file publication: temp file beside the target, fsync, rename.

Temp files are named `.tmp-{pid}-{process token}{counter}` so that a start-up sweep can
tell the leftovers of a dead process from the files of a live sibling worker. The token is
random once per process (a restarted process that reuses a pid gets another one), so no
name repeats and no per-file random number (a getrandom syscall on every upload) is needed.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import secrets
from io import FileIO
from pathlib import Path

from app.core.processes import current_pid, is_live_peer

logger = logging.getLogger("app.storage")

__all__ = ["is_live_peer"]

TEMP_PREFIX = ".tmp-"
_TOKEN = secrets.token_hex(8)
_COUNTER = itertools.count()


def temp_path_for(directory: Path) -> Path:
    """A fresh temp file name in `directory`, tagged with this process's pid."""
    return directory / f"{TEMP_PREFIX}{current_pid()}-{_TOKEN}{next(_COUNTER):x}"


def write_all(file: FileIO, data: bytes | bytearray | memoryview) -> None:
    """Write all of `data`. A file takes a write whole unless its disk (or size limit) is
    reached part-way; then the rest is written again, and raises ENOSPC or EFBIG, instead of
    being silently left out of a file whose size and hash count it."""
    written = file.write(data)
    if written != len(data):
        with memoryview(data) as view:
            while written < len(data):
                more = file.write(view[written:])
                if not more:  # never for a file; a loop that cannot end must not start
                    raise OSError(errno.EIO, f"A write to {file.name} took no bytes")
                written += more


def write_and_sync(path: Path, data: bytes) -> None:
    """Write `data` to a new file at `path` and fsync it."""
    with FileIO(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), "wb") as file:
        write_all(file, data)
        os.fsync(file.fileno())


def atomic_write(path: Path, data: bytes, temp_dir: Path | None = None) -> None:
    """Replace `path` with `data` atomically: readers see the old or the new file, never half.

    The temp file goes in `temp_dir` (default: beside `path`; it must be on the same file system).
    """
    tmp = temp_path_for(temp_dir or path.parent)
    try:
        write_and_sync(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        unlink_quietly(tmp)
        raise


def atomic_create(path: Path, data: bytes, temp_dir: Path | None = None) -> bool:
    """Publish `data` at `path` unless a file is already there; True if this call published.

    `os.link` fails when the target exists, so concurrent writers (threads or processes)
    agree on one winner and every reader sees the winner's bytes. The temp file goes in
    `temp_dir` (default: beside `path`; it must be on the same file system).
    """
    tmp = temp_path_for(temp_dir or path.parent)
    try:
        write_and_sync(tmp, data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        unlink_quietly(tmp)


def unlink_quietly(path: Path) -> None:
    """Remove a file if it exists."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def is_stale_temp(name: str) -> bool:
    """Whether `name` is a temp file of a process that is gone (not of a live sibling worker)."""
    if not name.startswith(TEMP_PREFIX):
        return False
    pid_text = name[len(TEMP_PREFIX) :].split("-", 1)[0]
    return not (pid_text.isdigit() and is_live_peer(int(pid_text)))


def sweep_temp_files(directory: Path) -> int:
    """Remove temp files left by dead processes in `directory`; returns how many."""
    removed = 0
    if not directory.is_dir():
        return 0
    for entry in os.scandir(directory):
        if is_stale_temp(entry.name):
            unlink_quietly(Path(entry.path))
            removed += 1
    if removed:
        logger.warning("removed %d stale temp file(s) from %s", removed, directory)
    return removed
