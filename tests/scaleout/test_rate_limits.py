"""A rate limit holds across three replicas behind nginx: it is kept in Redis, and each
replica counts the real client (nginx's X-Forwarded-For, trusted from FORWARDED_ALLOW_IPS,
uvicorn's default 127.0.0.1)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.factories import jpeg_bytes
from tests.scaleout.cluster import Cluster, start_cluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, s3_server: dict[str, Any]) -> Iterator[Cluster]:
    with start_cluster(
        tmp_path_factory.mktemp("limits"), s3_server, workers=0, RATE_LIMIT_UPLOAD="10/minute"
    ) as started:
        yield started


async def test_ten_uploads_a_minute_across_three_replicas(cluster: Cluster) -> None:
    files = {"file": ("a.jpg", jpeg_bytes(), "image/jpeg")}
    async with httpx.AsyncClient(timeout=60) as client:
        # 30 concurrent uploads through nginx (round robin: ten to each replica)
        answers = await asyncio.gather(
            *(client.post(cluster.nginx.base_url + "/api/v1/upload", files=files) for _ in range(30))
        )
        codes = sorted(r.status_code for r in answers)
        assert codes == [201] * 10 + [429] * 20, [r.text for r in answers if r.status_code not in (201, 429)]
        assert all("retry-after" in r.headers for r in answers if r.status_code == 429)

        # Through nginx a client cannot name another address: nginx replaces the header
        forged = await client.post(
            cluster.nginx.base_url + "/api/v1/upload",
            files=files,
            headers={"X-Forwarded-For": "198.51.100.1"},
        )
        assert forged.status_code == 429

        # Another client (a trusted proxy may name it) has a window of its own, shared by the replicas
        other = {"X-Forwarded-For": "203.0.113.9"}
        answers = [
            await client.post(url + "/api/v1/upload", files=files, headers=other) for url in cluster.urls * 4
        ]
        assert [r.status_code for r in answers] == [201] * 10 + [429] * 2
