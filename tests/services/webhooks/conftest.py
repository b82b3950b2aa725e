"""The database fixtures of tests/db (each test on SQLite and, with TEST_POSTGRES_URL, PostgreSQL)."""

from tests.db.conftest import database_url, empty_database_url, sessions

__all__ = ["database_url", "empty_database_url", "sessions"]
