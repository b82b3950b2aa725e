"""The servers the scale-out job engine's tests need: S3 (SeaweedFS) and PostgreSQL; the database
fixtures of tests/db (each test on SQLite and, with TEST_POSTGRES_URL, PostgreSQL)."""

import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from sqlalchemy.engine import make_url

from app.db import migrate
from app.storage.s3 import S3ObjectStore
from tests.db.conftest import _admin, database_url, empty_database_url, postgres_server_url, sessions
from tests.storage.conftest import s3_server

__all__ = ["bucket", "database_url", "empty_database_url", "pg_url", "replica_env", "s3_server", "sessions"]


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A new PostgreSQL database (migrated to head), dropped afterwards."""
    server = postgres_server_url()
    name = f"test_jobs_{uuid.uuid4().hex}"
    await _admin(server, f'CREATE DATABASE "{name}"')
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    try:
        await anyio.to_thread.run_sync(migrate.upgrade, url)
        yield url
    finally:
        await _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def replica_env(s3_server: dict[str, Any], pg_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The scale-out settings every replica and worker shares (as environment variables)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server["access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server["secret_access_key"])
    return {
        "DATABASE_URL": pg_url,
        "STORAGE_URL": f"s3://{s3_server['bucket']}/jobs-{uuid.uuid4().hex}",
        "S3_ENDPOINT_URL": s3_server["endpoint_url"],
        "S3_REGION": s3_server["region"],
        "SECRET_KEY": "a shared test secret of enough length for HS256 signing",
        "INITIAL_CREDITS": "5",
        "USER_CACHE_SECONDS": "0",
        "RATE_LIMITS_ENABLED": "false",
        "SCALE_OUT_CHECKS": "false",  # no Redis here: these tests are about the job engine
    }


@pytest.fixture
async def bucket(s3_server: dict[str, Any], replica_env: dict[str, str]) -> AsyncIterator[S3ObjectStore]:
    """A client of the replicas' bucket prefix, to look at the job objects they stored."""
    prefix = replica_env["STORAGE_URL"].split("/", 3)[3]
    async with S3ObjectStore(**s3_server, prefix=prefix) as store:
        yield store
        await store.delete_prefix("jobs/")
