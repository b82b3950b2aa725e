"""A replica SIGKILLed during 300 uploads through nginx: a client that retries with its
`Idempotency-Key` loses no acknowledged upload and makes no duplicate image.

A cluster of its own: it loses a replica. nginx passes a request whose connection a replica
refuses to the next one (`proxy_next_upstream error timeout`); a POST already sent to the
dying replica is not retried by nginx (non-idempotent) but by the client, with its key.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.factories import photo_jpeg
from tests.scaleout.cluster import Cluster, fetch, start_cluster

pytestmark = pytest.mark.slow

UPLOADS = 300
CONCURRENCY = 12
KILL_AFTER = 60  # acknowledged uploads before the kill
RETRIES = 40
RETRIED_STATUSES = {409, 502, 503, 504}  # 409: the dead replica's claim, until its lease ends


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, s3_server: dict[str, Any]) -> Iterator[Cluster]:
    # A dead replica's Idempotency-Key claim is 409 until its lease ends: short here
    with start_cluster(
        tmp_path_factory.mktemp("failover"), s3_server, IDEMPOTENCY_LEASE_SECONDS="2"
    ) as started:
        yield started


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
