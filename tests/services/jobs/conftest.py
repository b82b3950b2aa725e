"""The servers the scale-out job engine's tests need: S3 (SeaweedFS) and PostgreSQL; the database
fixtures of tests/db (each test on SQLite and, with TEST_POSTGRES_URL, PostgreSQL)."""

from tests.db.conftest import database_url, empty_database_url, sessions
from tests.storage.conftest import s3_server

__all__ = ["database_url", "empty_database_url", "s3_server", "sessions"]
