"""The documented error tree (app.core.errors' docstring) is the tree of AppError classes; a
full storage is recognised whoever reports it."""

from __future__ import annotations

import errno
import importlib
import pkgutil
import re
import sqlite3
from pathlib import Path

import asyncpg.exceptions
import psycopg.errors
import pytest
from sqlalchemy import exc as sa_exc

import app
from app.core import errors
from app.core.errors import AppError, ValidationFailed, is_storage_full


def _all_subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


def _documented() -> dict[str, tuple[str | None, int, str]]:
    """name -> (parent name, status, code) from the docstring's tree drawing."""
    tree: dict[str, tuple[str | None, int, str]] = {}
    stack: list[tuple[int, str]] = []
    for line in (errors.__doc__ or "").splitlines():
        match = re.fullmatch(r"(\s*(?:[│ ]   )*(?:[├└]── )?)(\w+)\s+(\d{3}) (\w+).*", line)
        if not match:
            continue
        depth = len(match.group(1))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parent = stack[-1][1] if stack else None
        tree[match.group(2)] = (parent, int(match.group(3)), match.group(4))
        stack.append((depth, match.group(2)))
    return tree


def test_every_app_error_is_in_the_documented_tree_and_defined_in_errors() -> None:
    # Import every module so that an AppError subclass defined anywhere is found.
    for module in pkgutil.walk_packages(app.__path__, "app."):
        importlib.import_module(module.name)
    classes = [AppError, *_all_subclasses(AppError)]
    documented = _documented()
    assert sorted(documented) == sorted(c.__name__ for c in classes)
    for cls in classes:
        assert cls.__module__ == "app.core.errors", f"{cls.__name__} lives outside the error tree module"
        parent = cls.__base__.__name__ if cls is not AppError else None
        assert documented[cls.__name__] == (parent, cls.status, cls.code), cls.__name__


def test_validation_errors_name_every_field() -> None:
    error = ValidationFailed.from_errors(
        [
            {"loc": ("body", "image_id"), "msg": "bad", "type": "t"},
            {"loc": ("top_k",), "msg": "big", "type": "u"},
        ],
        prefix="params.",
    )
    assert error.detail == "Invalid request: params.image_id: bad; params.top_k: big"
    assert error.extra["fields"] == ["params.image_id", "params.top_k"]


def test_storage_full_is_told_apart_from_other_failures(tmp_path: Path) -> None:
    """Full disks say ENOSPC or EDQUOT, a file size limit EFBIG, SQLite SQLITE_FULL, PostgreSQL
    SQLSTATE 53100 (also when SQLAlchemy wraps them); other errors are not storage_full."""
    database = sqlite3.connect(tmp_path / "small.db")
    database.execute("CREATE TABLE t (x BLOB)")
    database.execute("PRAGMA max_page_count = 4")
    with pytest.raises(sqlite3.OperationalError) as full:
        database.execute("INSERT INTO t VALUES (zeroblob(100000))")
    database.close()
    wrapped = sa_exc.OperationalError("INSERT", {}, full.value)
    for exc in (OSError(errno.ENOSPC, "full"), OSError(errno.EDQUOT, "quota"), OSError(errno.EFBIG, "big")):
        assert is_storage_full(exc)
    assert is_storage_full(full.value) and is_storage_full(wrapped)
    for pg_full in (  # PostgreSQL's disk_full (SQLSTATE 53100), as each driver raises it
        asyncpg.exceptions.DiskFullError("could not extend file: No space left on device"),
        psycopg.errors.DiskFull("could not extend file: No space left on device"),
    ):
        assert is_storage_full(pg_full) and is_storage_full(sa_exc.OperationalError("INSERT", {}, pg_full))
    for exc in (OSError(errno.EACCES, "denied"), sqlite3.OperationalError("no such table"), ValueError()):
        assert not is_storage_full(exc)
