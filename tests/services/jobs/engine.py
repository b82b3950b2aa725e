"""Helpers of the scale-out job engine's tests (tests/services/jobs/test_pg_queue.py and
test_pg_maintenance.py): replicas' settings, jobs that need no model, reading the database and
the bucket directly. Their fixtures (pg_url, replica_env, bucket) are in conftest.py."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
from PIL import Image
from sqlalchemy.engine import make_url

from app.core.config import Settings
from app.storage.s3 import S3ObjectStore
from tests.conftest import serve
from tests.factories import encode

SUBMIT = "/api/v1/frontal/crop/submit"
STATUS = "/api/v1/frontal/crop/status/{}"
USER = {"username": "carol", "password": "correct horse battery staple"}


def landmark_job(seed: int) -> dict[str, Any]:
    """A job that needs no model: a blank image and 68 landmarks (distinct per `seed`)."""
    blank = encode(Image.new("RGB", (400, 400), (128, 128, seed % 256)), "PNG")
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    points = [{"x": 200 + 100 * np.cos(a), "y": 200 + 120 * np.sin(a)} for a in angles]
    return {"image": base64.b64encode(blank).decode(), "landmarks": points}


async def login(client: httpx.AsyncClient, register: bool) -> dict[str, str]:
    if register:
        assert (await client.post("/api/v1/auth/register", json=USER)).status_code == 201
    token = (await client.post("/api/v1/auth/login", json=USER)).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


async def wait_finished(
    client: httpx.AsyncClient, job_id: str, headers: dict[str, str], timeout: float
) -> dict[str, Any]:
    with anyio.fail_after(timeout):
        while True:
            resp = await client.get(STATUS.format(job_id), headers=headers)
            assert resp.status_code == 200, resp.text
            if resp.json()["status"] in ("completed", "failed"):
                return resp.json()
            await anyio.sleep(0.1)


@asynccontextmanager
async def serve_ready(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client for an in-process replica on `settings` once its `/readyz` answers 200, as a load
    balancer sends a replica no work before: its job engine connects in the background after
    start-up, and a job request before that is a 503 (`database_unavailable`)."""
    async with serve(settings) as client:
        with anyio.fail_after(60):
            while (await client.get("/readyz")).status_code != 200:
                await anyio.sleep(0.05)
        yield client


def replica_settings(replica_env: dict[str, str], tmp_path: Path, name: str, **overrides: Any) -> Settings:
    """One in-process replica's settings: its own data dir, the shared database and bucket."""
    values: dict[str, Any] = {k.lower(): v for k, v in replica_env.items()}
    values.update(overrides)
    return Settings(_env_file=None, data_dir=tmp_path / name, environment="test", api_keys=[], **values)


async def job_keys(store: S3ObjectStore) -> set[str]:
    """The content keys that have an object under `jobs/` (inputs or results)."""
    return {info.key.rpartition("/")[2] async for info in store.list("jobs/")}


async def sql(url: str, query: str, *args: Any) -> list[Any]:
    """Rows of one statement on the test database (to read or create a state directly)."""
    import asyncpg

    conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def content_key(url: str, job_id: str) -> str:
    return str((await sql(url, "SELECT content_key FROM contour_jobs WHERE job_id = $1", job_id))[0][0])


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 60.0) -> None:
    """Poll until `check` holds (an upper bound: it returns as soon as it holds)."""
    with anyio.fail_after(seconds):
        while not await check():
            await anyio.sleep(0.1)
