"""Seed 004 contour jobs in scale-out mode (S3 + PostgreSQL): procrastinate, shared records.

Replicas with separate data dirs share one PostgreSQL database and one bucket prefix. A job
submitted to one replica is read from every replica; the same content is computed once and
charged once; a worker SIGKILLed while it runs a (slowed) job has that job completed by the
other worker (the stalled sweep), charged once, readable from every replica.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import pytest
from PIL import Image
from sqlalchemy.engine import make_url

from app.core.config import Settings
from app.db import migrate
from tests.conftest import serve
from tests.db.conftest import _admin, postgres_server_url
from tests.factories import encode
from tests.processes import Server, Worker, start_server

SUBMIT = "/api/v1/frontal/crop/submit"
STATUS = "/api/v1/frontal/crop/status/{}"
USER = {"username": "carol", "password": "correct horse battery staple"}


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


async def test_a_job_submitted_to_one_replica_is_read_from_the_other_and_charged_once(
    replica_env: dict[str, str], tmp_path: Path
) -> None:
    def settings(name: str) -> Settings:
        values = {k.lower(): v for k, v in replica_env.items()}
        return Settings(_env_file=None, data_dir=tmp_path / name, environment="test", api_keys=[], **values)

    async with serve(settings("a")) as a, serve(settings("b")) as b:
        carol = await login(a, register=True)
        job = landmark_job(1)
        accepted = await a.post(SUBMIT, json=job, headers=carol)
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        done = await wait_finished(b, job_id, carol, timeout=60)
        assert done["status"] == "completed" and done["result"], done
        assert (await a.get(STATUS.format(job_id), headers=carol)).json() == done
        assert list((tmp_path / "a" / "jobs").glob("**/*.json")) == []  # nothing in a data dir

        again = await b.post(SUBMIT, json=job, headers=carol)  # the same content: from the cache
        assert again.status_code == 202 and again.json()["status"] == "completed"
        assert (await a.get(STATUS.format(again.json()["job_id"]), headers=carol)).json()["result"] == done[
            "result"
        ]
        for replica in (a, b):
            assert (await replica.get("/v1/me", headers=carol)).json()["credits"] == 4

        # New content sent to both replicas at once, twice each (each submit holds one of the 4
        # credits until it knows it joined): one computation, one charge.
        fresh = landmark_job(3)
        sent = await asyncio.gather(*(r.post(SUBMIT, json=fresh, headers=carol) for r in (a, b) * 2))
        assert [r.status_code for r in sent] == [202] * 4, [r.text for r in sent]
        replicas = (b, a) * 2  # each status read from the other replica
        finished = [
            await wait_finished(r, s.json()["job_id"], carol, 60) for r, s in zip(replicas, sent, strict=True)
        ]
        assert {f["status"] for f in finished} == {"completed"}
        assert len({f["result"] for f in finished}) == 1
        for replica in (a, b):
            assert (await replica.get("/v1/me", headers=carol)).json()["credits"] == 3
        # Someone else's job is not found, on either replica.
        other = {"username": "dave", "password": "correct horse battery staple"}
        assert (await b.post("/api/v1/auth/register", json=other)).status_code == 201
        token = (await b.post("/api/v1/auth/login", json=other)).json()["access_token"]
        seen = await b.get(STATUS.format(job_id), headers={"Authorization": f"Bearer {token}"})
        assert seen.status_code == 404 and seen.json()["code"] == "job_not_found"


@pytest.fixture
def processes() -> Iterator[list[Server | Worker]]:
    started: list[Server | Worker] = []
    yield started
    for process in started:
        process.stop()


@pytest.mark.slow
async def test_a_job_whose_worker_is_killed_completes_on_the_other_worker(
    replica_env: dict[str, str], tmp_path: Path, processes: list[Server | Worker], pg_url: str
) -> None:
    """Two API replicas without workers, two worker processes; the slowed job's worker is
    SIGKILLed mid-run. The stalled sweep hands the job to the other worker."""
    env = {
        **replica_env,
        "JOB_WORKER_IN_PROCESS": "false",
        "JOB_RUN_DELAY_SECONDS": "4",
        "JOB_HEARTBEAT_SECONDS": "0.5",
        "JOB_STALLED_AFTER_SECONDS": "3",
        "JOB_SWEEP_INTERVAL_SECONDS": "0.5",
        "JOB_POLL_INTERVAL_SECONDS": "0.5",
        "LOG_LEVEL": "INFO",
    }
    api = [start_server(processes, tmp_path / f"api{i}", f"api{i}", env) for i in range(2)]  # type: ignore[arg-type]
    workers = [Worker({**env, "DATA_DIR": str(tmp_path / f"w{i}")}, tmp_path / f"w{i}.log") for i in range(2)]
    processes.extend(workers)
    async with (
        httpx.AsyncClient(base_url=api[0].base_url, timeout=30) as a,
        httpx.AsyncClient(base_url=api[1].base_url, timeout=30) as b,
    ):
        carol = await login(a, register=True)
        accepted = await a.post(SUBMIT, json=landmark_job(2), headers=carol)
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        with anyio.fail_after(60):  # which worker runs it: the record names it (host:pid)
            while True:
                running = await pg_worker(pg_url, job_id)
                if running is not None:
                    break
                await anyio.sleep(0.1)
        victim = next(w for w in workers if running.endswith(f":{w.process.pid}"))
        victim.process.kill()
        victim.process.wait()
        killed = time.monotonic()
        done = await wait_finished(b, job_id, carol, timeout=90)
        elapsed = time.monotonic() - killed
        assert done["status"] == "completed" and done["result"], done
        survivor = next(w for w in workers if w is not victim)
        finisher = await pg_worker(pg_url, job_id, status="completed")
        assert finisher == f"{socket.gethostname()}:{survivor.process.pid}"
        assert (await a.get(STATUS.format(job_id), headers=carol)).json() == done
        for replica in (a, b):
            assert (await replica.get("/v1/me", headers=carol)).json()["credits"] == 4
        print(f"killed worker's job completed on the other worker {elapsed:.2f} s after the kill")


async def pg_worker(url: str, job_id: str, status: str = "running") -> str | None:
    """The worker named by the job's record while it has `status`."""
    import asyncpg

    conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
    try:
        return await conn.fetchval(  # type: ignore[no-any-return]
            "SELECT worker FROM contour_jobs WHERE job_id = $1 AND status = $2", job_id, status
        )
    finally:
        await conn.close()
