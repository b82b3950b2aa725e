"""Apply Alembic migrations: at start-up, from `make run`, or by hand (`python -m app.db.migrate`).

Safe when several processes start at once: on PostgreSQL the upgrade runs under an advisory
lock, on SQLite under an exclusive file lock beside the database; whoever comes second
finds the schema at head and does nothing.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from app.core.config import Settings, get_settings
from app.db.engine import is_sqlite

logger = logging.getLogger("app.db")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
ADVISORY_LOCK_KEY = 0x1A6E_5E7C  # any constant shared by every process of this service
# Alembic's `context` is process-global: one migration at a time per process.
_IN_PROCESS = threading.Lock()


def alembic_config(url: str) -> Config:
    """An Alembic config for `url` without an ini file."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["advisory_lock"] = ADVISORY_LOCK_KEY
    return config


@contextmanager
def _file_lock(url: str) -> Iterator[None]:
    database = make_url(url).database
    if not database or database == ":memory:":
        yield
        return
    lock_path = Path(database).with_name(Path(database).name + ".migrate.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` (blocking; idempotent)."""
    _migrate(command.upgrade, url, revision)


def downgrade(url: str, revision: str) -> None:
    """Take the database at `url` back to `revision` (blocking)."""
    _migrate(command.downgrade, url, revision)


def _migrate(step: Callable[[Config, str], None], url: str, revision: str) -> None:
    config = alembic_config(url)
    with _IN_PROCESS:
        if is_sqlite(url):
            with _file_lock(url):
                step(config, revision)
        else:
            step(config, revision)  # env.py holds the advisory lock


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Apply the service's database migrations.")
    parser.add_argument("action", choices=["upgrade", "downgrade"], nargs="?", default="upgrade")
    parser.add_argument("revision", nargs="?", default=None, help="default: head (upgrade)")
    args = parser.parse_args(argv)
    settings: Settings = get_settings()
    if args.action == "upgrade":
        upgrade(settings.database, args.revision or "head")
    else:
        downgrade(settings.database, args.revision or "-1")
    print(f"database {args.action} done: {make_url(settings.database).render_as_string(hide_password=True)}")


if __name__ == "__main__":
    main()
