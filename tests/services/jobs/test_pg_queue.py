"""The scale-out job engine (`app.services.jobs.pg_queue`): seed 004 contour jobs on
procrastinate, records in PostgreSQL, bytes in S3.

Replicas with separate data dirs share one PostgreSQL database and one bucket prefix. A job
submitted to one replica is read from every replica; the same content is computed once and
charged once; a worker SIGKILLed while it runs a (slowed) job has that job completed by the
other worker (the stalled sweep), charged once, readable from every replica.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy.engine import make_url

from app.core.config import Settings
from app.core.threads import ThreadPool
from app.services.images.catalog import ORPHAN_LOCK_KEY
from app.services.jobs.pg_queue import QUEUE, ProcrastinateJobQueue
from app.services.jobs.settings import JobSettings
from app.storage.s3 import S3ObjectStore
from tests.api.test_contour_reuse import check_reuse
from tests.conftest import MODEL_DIR, serve
from tests.processes import Server, Worker, start_server
from tests.relay import Relay
from tests.services.jobs.engine import (
    STATUS,
    SUBMIT,
    content_key,
    eventually,
    job_keys,
    landmark_job,
    login,
    replica_settings,
    serve_ready,
    sql,
    wait_finished,
)


async def test_a_job_submitted_to_one_replica_is_read_from_the_other_and_charged_once(
    replica_env: dict[str, str], tmp_path: Path
) -> None:
    def settings(name: str) -> Settings:
        values = {k.lower(): v for k, v in replica_env.items()}
        return Settings(_env_file=None, data_dir=tmp_path / name, environment="test", api_keys=[], **values)

    async with serve_ready(settings("a")) as a, serve_ready(settings("b")) as b:
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


async def engine_tasks_idle(url: str) -> bool:
    """No contour task is waiting or running in the job engine's own table."""
    import asyncpg

    conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
    try:
        busy = await conn.fetchval(
            "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = $1 AND status IN ('todo', 'doing')",
            QUEUE,
        )
        return busy == 0
    finally:
        await conn.close()


# -- bounds, retention, erasure, lost work, readiness (scale-out job engine) -------------------


async def test_job_max_pending_is_shared_by_the_replicas_and_a_refusal_stores_nothing(
    replica_env: dict[str, str], tmp_path: Path, bucket: S3ObjectStore, pg_url: str
) -> None:
    """JOB_MAX_PENDING counts waiting work in PostgreSQL: a job waiting on one replica fills
    the queue for the other; 503 `queue_full` with Retry-After, nothing stored, no credit held."""
    idle = {"job_max_pending": 1, "job_worker_in_process": False}
    async with (
        serve_ready(replica_settings(replica_env, tmp_path, "a", **idle)) as a,
        serve_ready(replica_settings(replica_env, tmp_path, "b", **idle)) as b,
    ):
        carol = await login(a, register=True)
        first = await a.post(SUBMIT, json=landmark_job(10), headers=carol)
        assert first.status_code == 202 and first.json()["status"] == "pending", first.text
        stored = await job_keys(bucket)
        for job in (landmark_job(11), landmark_job(10)):  # new content, and the waiting one's
            refused = await b.post(SUBMIT, json=job, headers=carol)
            assert refused.status_code == 503, refused.text
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert refused.json()["code"] == "queue_full" and int(refused.headers["retry-after"]) >= 1
        assert await job_keys(bucket) == stored
        assert len(await sql(pg_url, "SELECT 1 FROM contour_jobs")) == 1
        # A replica with a worker runs the waiting job: there is room again.
        async with serve_ready(replica_settings(replica_env, tmp_path, "c")) as c:
            done = await wait_finished(c, first.json()["job_id"], carol, timeout=60)
            assert done["status"] == "completed"
            later = await b.post(SUBMIT, json=landmark_job(11), headers=carol)
            assert later.status_code == 202, later.text
            assert (await wait_finished(c, later.json()["job_id"], carol, timeout=60))[
                "status"
            ] == "completed"
        assert (await a.get("/v1/me", headers=carol)).json()["credits"] == 3  # each charged once


async def test_account_erasure_removes_the_users_job_records_and_objects(
    replica_env: dict[str, str], tmp_path: Path, bucket: S3ObjectStore, pg_url: str
) -> None:
    """DELETE /api/v1/auth/me: the user's job records and the objects only they refer to go;
    content another user's job names stays."""
    async with serve_ready(replica_settings(replica_env, tmp_path, "a")) as a:
        carol = await login(a, register=True)
        dave_user = {"username": "dave", "password": "correct horse battery staple"}
        assert (await a.post("/api/v1/auth/register", json=dave_user)).status_code == 201
        token = (await a.post("/api/v1/auth/login", json=dave_user)).json()["access_token"]
        dave = {"Authorization": f"Bearer {token}"}
        own = (await a.post(SUBMIT, json=landmark_job(30), headers=carol)).json()["job_id"]
        both = (await a.post(SUBMIT, json=landmark_job(31), headers=carol)).json()["job_id"]
        for job_id in (own, both):
            assert (await wait_finished(a, job_id, carol, timeout=60))["status"] == "completed"
        theirs = (await a.post(SUBMIT, json=landmark_job(31), headers=dave)).json()["job_id"]
        mine, shared = await content_key(pg_url, own), await content_key(pg_url, both)
        assert await job_keys(bucket) == {mine, shared}

        assert (await a.delete("/api/v1/auth/me", headers=carol)).status_code == 204
        assert await job_keys(bucket) == {shared}
        assert [r[0] for r in await sql(pg_url, "SELECT job_id FROM contour_jobs")] == [theirs]
        assert (await a.get(STATUS.format(theirs), headers=dave)).json()["result"]


async def test_the_job_engines_pool_is_a_readiness_check_and_recovers(
    replica_env: dict[str, str], tmp_path: Path, pg_url: str
) -> None:
    """PostgreSQL unreachable (a relay in front of it, closed): `/readyz` 503 with a failing
    `job_engine` check, job routes 503 `database_unavailable`; reopened, jobs run again."""
    url = make_url(pg_url)
    relay = Relay(f"{url.host}:{url.port}")
    await relay.open()
    settings = replica_settings(
        replica_env,
        tmp_path,
        "a",
        database_url=url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False),
        database_connect_timeout_seconds=1,
    )
    try:
        async with serve(settings) as a:
            carol = await login(a, register=True)

            async def ready() -> bool:
                resp = await a.get("/readyz")
                checks = {c["name"]: c for c in resp.json()["checks"]}
                return resp.status_code == 200 and checks["job_engine"]["ok"]

            await eventually(ready)
            first = await a.post(SUBMIT, json=landmark_job(50), headers=carol)
            assert (await wait_finished(a, first.json()["job_id"], carol, timeout=60))[
                "status"
            ] == "completed"
            # The record says completed before the worker marks its engine task done: cutting the
            # database in between would leave that task `doing` and its write failing under load.
            await eventually(lambda: engine_tasks_idle(pg_url))

            await relay.close()
            resp = await a.get("/readyz")
            assert resp.status_code == 503
            check = {c["name"]: c for c in resp.json()["checks"]}["job_engine"]
            assert check["ok"] is False and check["required"] is True, check
            for answer in (
                await a.get(STATUS.format(first.json()["job_id"]), headers=carol),
                await a.post(SUBMIT, json=landmark_job(51), headers=carol),
            ):
                assert answer.status_code == 503, answer.text
                assert answer.json()["code"] == "database_unavailable" and answer.headers["retry-after"]

            await relay.open()
            await eventually(ready)
            again = await a.post(SUBMIT, json=landmark_job(51), headers=carol)
            assert again.status_code == 202, again.text
            assert (await wait_finished(a, again.json()["job_id"], carol, timeout=60))[
                "status"
            ] == "completed"
    finally:
        await relay.close()


async def test_the_object_orphan_sweep_runs_on_one_replica_at_a_time(
    replica_env: dict[str, str], tmp_path: Path, bucket: S3ObjectStore, pg_url: str
) -> None:
    """On PostgreSQL the start-up sweep of objects no catalog row names takes an advisory lock:
    while another holder has it, a replica skips the sweep (the holder covers the same objects);
    once free, the next start-up removes them (by age: STORAGE_ORPHAN_GRACE_SECONDS)."""
    import asyncpg

    orphan = str(uuid.uuid4())  # bytes of an upload that died before its commit
    await bucket.create(f"images/{orphan}/original.jpg", b"\xff\xd8\xff not committed")
    await anyio.sleep(1.1)  # S3 times have whole seconds: the object is now older than a grace of 0
    settings = replica_settings(replica_env, tmp_path, "a", storage_orphan_grace_seconds=0)
    holder = await asyncpg.connect(make_url(pg_url).set(drivername="postgresql").render_as_string(False))
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", ORPHAN_LOCK_KEY)  # another replica sweeping
        async with serve(settings):
            assert [info.key async for info in bucket.list(f"images/{orphan}/")]
        await holder.execute("SELECT pg_advisory_unlock($1)", ORPHAN_LOCK_KEY)
        async with serve(settings):
            assert [info.key async for info in bucket.list(f"images/{orphan}/")] == []
    finally:
        await holder.close()
        await bucket.delete_prefix("images/")


async def test_a_reencoded_photo_reuses_the_earlier_job_on_the_postgresql_engine(
    replica_env: dict[str, str], tmp_path: Path
) -> None:
    """Perceptual reuse of contour jobs (issue 18) with records in PostgreSQL and bytes in S3:
    the same scenario as the embedded queue's (tests/api/test_contour_reuse.py)."""
    values = {k.lower(): v for k, v in replica_env.items()}
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path / "a",
        environment="test",
        api_keys=[],
        model_dir=MODEL_DIR,
        **values,
    )
    async with serve_ready(settings) as client:
        await check_reuse(client)


@pytest.mark.parametrize(
    "lost_in",
    [
        ("app", "open_async"),  # while the engine starts: before any worker exists
        ("job_manager", "prune_stalled_workers"),  # while a worker starts, before its own shield
    ],
)
async def test_stop_ends_even_when_a_library_loses_the_cancel(
    replica_env: dict[str, str], tmp_path: Path, bucket: S3ObjectStore, lost_in: tuple[str, str]
) -> None:
    """A stop cancels the engine's task once; a library call that swallows that cancel (as
    Python 3.11's `asyncio.wait_for` can, when what it waits for ends at the same moment) must
    not leave the process unable to stop: it did hang there, a worker running on."""
    settings = replica_settings(replica_env, tmp_path, "a")
    queue = ProcrastinateJobQueue(
        JobSettings.from_settings(settings), bucket, lambda data: data, run_pool=ThreadPool("jobs", 1)
    )
    owner = queue.app if lost_in[0] == "app" else queue.app.job_manager
    original = getattr(owner, lost_in[1])
    entered = asyncio.Event()

    async def losing_the_cancel(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        try:
            await asyncio.sleep(30)  # the stop comes here...
        except asyncio.CancelledError:
            pass  # ...and is lost
        return await original(*args, **kwargs)

    setattr(owner, lost_in[1], losing_the_cancel)
    await queue.start()
    await asyncio.wait_for(entered.wait(), 30)
    stopping = asyncio.ensure_future(queue.stop())
    await asyncio.wait({stopping}, timeout=30)  # not wait_for: stop() must end of itself
    assert stopping.done(), "stop() is still waiting for the engine's task"
    stopping.result()
    workers = await sql(replica_env["DATABASE_URL"], "SELECT count(*) FROM procrastinate_workers")
    assert workers[0][0] == 0  # no worker left running (or registered)
