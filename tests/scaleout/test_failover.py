"""Failures on the three-replica cluster (two job workers, nginx in front): S3 and PostgreSQL
made unreachable for every process at once (TCP relays closed, then opened again), a job
worker SIGKILLed mid-job, a replica SIGKILLed during 300 uploads.

One cluster for the module, its tests in file order: the outages first (every process is
whole, and recovers without a restart), then the kills, each losing a process for good.
nginx passes a request whose connection a replica refuses to the next one
(`proxy_next_upstream error timeout`); a POST already sent to the dying replica is not retried
by nginx (non-idempotent) but by the client, with its key.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.storage.s3 import S3ObjectStore
from tests.conftest import files_under
from tests.factories import jpeg_bytes, photo_jpeg
from tests.scaleout.cluster import Cluster, fetch, start_cluster
from tests.services.jobs.engine import STATUS, SUBMIT, landmark_job, wait_finished
from tests.services.jobs.test_pg_queue import pg_worker
from tests.storage.test_s3_app import wait_for

pytestmark = pytest.mark.slow

UPLOAD = "/api/v1/upload"
UPLOADS = 300
CONCURRENCY = 12
KILL_AFTER = 60  # acknowledged uploads before the kill
RETRIES = 40
RETRIED_STATUSES = {409, 502, 503, 504}  # 409: the dead replica's claim, until its lease ends
S3_RETRY_AFTER = "7"
JOB_RUN_DELAY = 4.0  # seconds each job run waits first: time to kill its worker mid-run


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, s3_server: dict[str, Any]) -> Iterator[Cluster]:
    with start_cluster(
        tmp_path_factory.mktemp("failover"),
        s3_server,
        relays=True,
        # A dead replica's Idempotency-Key claim is 409 until its lease ends: short here
        IDEMPOTENCY_LEASE_SECONDS="2",
        # An unreachable S3 answers at once (refused), one attempt: 503 without waiting
        S3_CONNECT_TIMEOUT_SECONDS="0.5",
        S3_READ_TIMEOUT_SECONDS="2",
        S3_MAX_ATTEMPTS="1",
        S3_RETRY_AFTER_SECONDS=S3_RETRY_AFTER,
        DATABASE_CONNECT_TIMEOUT_SECONDS="2",
        # Jobs slowed, and a dead worker noticed within seconds (as tests/services/jobs/test_pg_queue.py)
        INITIAL_CREDITS="5",
        USER_CACHE_SECONDS="0",
        JOB_RUN_DELAY_SECONDS=str(JOB_RUN_DELAY),
        JOB_HEARTBEAT_SECONDS="0.5",
        JOB_STALLED_AFTER_SECONDS="3",
        JOB_SWEEP_INTERVAL_SECONDS="0.5",
        JOB_POLL_INTERVAL_SECONDS="0.5",
    ) as started:
        yield started


def files(body: bytes) -> dict[str, Any]:
    return {"file": ("p.jpg", body, "image/jpeg")}


def local_files(cluster: Cluster) -> dict[str, list[str]]:
    """What every replica and worker keeps on its disk (its own metrics files aside)."""
    return {d.name: [f for f in files_under(d) if not f.startswith("metrics/")] for d in cluster.data_dirs}


async def image_ids_in_database(cluster: Cluster) -> set[str]:
    return {r["image_id"] for r in await fetch(cluster.database_url, "SELECT image_id FROM images")}


async def image_ids_in_bucket(cluster: Cluster) -> set[str]:
    """The image ids that have objects under the cluster's prefix (originals and results)."""
    async with S3ObjectStore(**cluster.s3, prefix=cluster.prefix) as store:
        return {info.key.split("/")[1] async for info in store.list("images/")}


async def all_ready(client: httpx.AsyncClient, urls: list[str]) -> bool:
    codes = [(await client.get(url + "/readyz")).status_code for url in urls]
    return codes == [200] * len(urls)


async def assert_not_ready(client: httpx.AsyncClient, urls: list[str], check: str) -> None:
    """/readyz is 503 on every replica, the named dependency check failing."""
    for url in urls:
        ready = await client.get(url + "/readyz")
        assert ready.status_code == 503, (url, ready.text)
        assert {c["name"]: c["ok"] for c in ready.json()["checks"]}[check] is False, ready.text


def assert_unavailable(response: httpx.Response, code: str, retry_after: str | None = None) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code and response.json()["detail"], response.text
    assert int(response.headers["retry-after"]) > 0
    if retry_after is not None:
        assert response.headers["retry-after"] == retry_after


async def test_s3_unreachable_is_503_everywhere_leaves_nothing_and_recovers(cluster: Cluster) -> None:
    assert cluster.s3_relay is not None
    fronts = [*cluster.urls, cluster.nginx.base_url]
    async with httpx.AsyncClient(timeout=60) as client:
        up = await client.post(cluster.nginx.base_url + UPLOAD, files=files(photo_jpeg()))
        assert up.status_code == 201, up.text
        image_id = up.json()["image_id"]
        assert await all_ready(client, cluster.urls)
        rows, disks = await image_ids_in_database(cluster), local_files(cluster)

        cluster.s3_relay.close()
        try:
            for i, url in enumerate(fronts):
                for response in (
                    await client.post(url + UPLOAD, files=files(jpeg_bytes(color=(i, 2, 3)))),
                    await client.post(url + "/api/v1/analyze", json={"image_id": image_id}),
                    await client.get(f"{url}/api/v1/images/{image_id}/content"),
                ):
                    assert_unavailable(response, "storage_unavailable", S3_RETRY_AFTER)
            await assert_not_ready(client, cluster.urls, "storage")
            # Nothing half-written: no new row, no file left in any data dir
            assert await image_ids_in_database(cluster) == rows
            assert local_files(cluster) == disks
        finally:
            cluster.s3_relay.open()

        # Back without a restart: every replica serves again
        await wait_for(lambda: all_ready(client, cluster.urls), 60)
        for i, url in enumerate(fronts):
            body = jpeg_bytes(color=(i, 2, 3))
            again = await client.post(url + UPLOAD, files=files(body))
            assert again.status_code == 201, again.text
            new_id = again.json()["image_id"]
            content = await client.get(f"{url}/api/v1/images/{new_id}/content")
            assert content.status_code == 200 and content.content == body
            analyzed = await client.post(url + "/api/v1/analyze", json={"image_id": image_id})
            assert analyzed.status_code == 200, analyzed.text
        # Every row has its object, and no object is without its row
        assert await image_ids_in_bucket(cluster) == await image_ids_in_database(cluster)
        assert local_files(cluster) == disks


async def test_postgresql_down_is_503_everywhere_and_recovers(cluster: Cluster) -> None:
    assert cluster.pg_relay is not None
    fronts = [*cluster.urls, cluster.nginx.base_url]
    async with httpx.AsyncClient(timeout=60) as client:
        up = await client.post(cluster.nginx.base_url + UPLOAD, files=files(photo_jpeg()))
        assert up.status_code == 201, up.text
        image_id = up.json()["image_id"]
        rows, disks = await image_ids_in_database(cluster), local_files(cluster)

        cluster.pg_relay.close()
        try:
            for i, url in enumerate(fronts):
                # What needs the database (a replica may still serve what it has cached: the
                # catalog row and result of an image it saw)
                unknown = str(uuid.uuid4())
                for response in (
                    await client.post(url + UPLOAD, files=files(jpeg_bytes(color=(i, 5, 6)))),
                    await client.get(url + "/api/v1/images"),
                    await client.get(f"{url}/api/v1/images/{unknown}"),
                    await client.post(url + "/api/v1/analyze", json={"image_id": unknown}),
                    await client.post(
                        url + "/api/v1/auth/login", json={"username": "x", "password": "y" * 8}
                    ),
                ):
                    assert_unavailable(response, "database_unavailable")
            await assert_not_ready(client, cluster.urls, "database")
            assert local_files(cluster) == disks
        finally:
            cluster.pg_relay.open()

        await wait_for(lambda: all_ready(client, cluster.urls), 60)
        assert await image_ids_in_database(cluster) == rows  # none of the refused uploads
        for i, url in enumerate(fronts):
            body = jpeg_bytes(color=(i, 5, 6))
            again = await client.post(url + UPLOAD, files=files(body))
            assert again.status_code == 201, again.text
            meta = await client.get(f"{url}/api/v1/images/{image_id}")
            assert meta.status_code == 200, meta.text
            analyzed = await client.post(url + "/api/v1/analyze", json={"image_id": image_id})
            assert analyzed.status_code == 200, analyzed.text
        assert await image_ids_in_bucket(cluster) == await image_ids_in_database(cluster)
        assert local_files(cluster) == disks


async def test_a_worker_killed_during_a_job_has_it_completed_by_the_other(
    cluster: Cluster, capsys: Any
) -> None:
    """Submitted through nginx; the worker that runs it (the record names it, host:pid) is
    SIGKILLed mid-run; the stalled sweep hands it to the other worker."""
    async with httpx.AsyncClient(base_url=cluster.nginx.base_url, timeout=60) as client:
        user = {"username": f"u{uuid.uuid4().hex[:12]}", "password": "correct horse battery staple"}
        assert (await client.post("/api/v1/auth/register", json=user)).status_code == 201
        token = (await client.post("/api/v1/auth/login", json=user)).json()["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}
        accepted = await client.post(SUBMIT, json=landmark_job(7), headers=bearer)
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]

        async def running() -> bool:
            return await pg_worker(cluster.database_url, job_id) is not None

        await wait_for(running, 60)
        runner = await pg_worker(cluster.database_url, job_id)
        victim = next(w for w in cluster.workers if runner == f"{socket.gethostname()}:{w.pid}")
        survivor = next(w for w in cluster.workers if w is not victim)
        victim.kill()
        killed = time.monotonic()
        done = await wait_finished(client, job_id, bearer, timeout=90)
        elapsed = time.monotonic() - killed
        assert done["status"] == "completed" and done["result"], done
        finisher = await pg_worker(cluster.database_url, job_id, status="completed")
        assert finisher == f"{socket.gethostname()}:{survivor.pid}"

        # Its status is the same 200 from every replica and through nginx
        for url in [*cluster.urls, cluster.nginx.base_url]:
            status = await client.get(url + STATUS.format(job_id), headers=bearer)
            assert status.status_code == 200 and status.json() == done, status.text
        # Charged once: one ledger entry for it, the balance equal to the ledger's sum
        for url in cluster.urls:
            assert (await client.get(url + "/v1/me", headers=bearer)).json()["credits"] == 4
        ledger = await fetch(
            cluster.database_url,
            "SELECT l.delta, l.subject_key, u.credits FROM credit_ledger l JOIN users u ON u.id = l.user_id"
            " WHERE u.username = $1 ORDER BY l.id",
            user["username"],
        )
        charges = [r for r in ledger if r["delta"] < 0]
        assert [r["delta"] for r in charges] == [-1], ledger
        assert sum(r["delta"] for r in ledger) == ledger[0]["credits"] == 4
        with capsys.disabled():
            print(
                f"\nworker SIGKILLed mid-job (run slowed {JOB_RUN_DELAY:.0f} s, stalled after 3 s):"
                f" completed on the other worker {elapsed:.2f} s after the kill"
            )


async def test_a_replica_killed_during_uploads_loses_nothing_acknowledged(
    cluster: Cluster, capsys: Any
) -> None:
    photo = photo_jpeg()
    count = "SELECT count(*) AS n FROM images"
    before = (await fetch(cluster.database_url, count))[0]["n"]
    acknowledged: dict[str, str] = {}  # key -> image id
    first_try_errors: list[str] = []
    retry_errors: list[str] = []
    enough = asyncio.Event()
    queue: asyncio.Queue[str] = asyncio.Queue()
    for _ in range(UPLOADS):
        queue.put_nowait(f"upload-{uuid.uuid4().hex}")

    async def upload(client: httpx.AsyncClient, key: str) -> None:
        for attempt in range(RETRIES):
            errors = first_try_errors if attempt == 0 else retry_errors
            try:
                answer = await client.post(
                    "/api/v1/upload",
                    files={"file": ("p.jpg", photo, "image/jpeg")},
                    headers={"Idempotency-Key": key},
                )
            except httpx.TransportError as exc:
                errors.append(type(exc).__name__)
            else:
                if answer.status_code == 201:
                    acknowledged[key] = answer.json()["image_id"]
                    if len(acknowledged) >= KILL_AFTER:
                        enough.set()
                    return
                assert answer.status_code in RETRIED_STATUSES, answer.text
                errors.append(str(answer.status_code))
            await asyncio.sleep(0.25)
        raise AssertionError(f"{key}: no upload after {RETRIES} tries")

    async def client_loop() -> None:
        async with httpx.AsyncClient(base_url=cluster.nginx.base_url, timeout=60) as client:
            while not queue.empty():
                await upload(client, queue.get_nowait())

    async def killer() -> None:
        await enough.wait()
        cluster.replicas[1].kill()

    await asyncio.gather(killer(), *(client_loop() for _ in range(CONCURRENCY)))
    assert cluster.replicas[1].process.poll() is not None  # killed mid-run
    assert len(acknowledged) == UPLOADS
    assert len(set(acknowledged.values())) == UPLOADS  # one image per key
    assert (await fetch(cluster.database_url, count))[0]["n"] - before == UPLOADS  # no duplicate
    async with httpx.AsyncClient(base_url=cluster.nginx.base_url, timeout=60) as client:
        for image_id in acknowledged.values():
            content = await client.get(f"/api/v1/images/{image_id}/content")
            assert content.status_code == 200 and content.content == photo
    with capsys.disabled():
        print(
            f"\n{UPLOADS} uploads, replica killed after {KILL_AFTER}: errors on first tries"
            f" {sorted(first_try_errors)}, on retries {sorted(retry_errors)}"
        )
