"""Rate limits per caller and per address, per route class, in memory and in a real Redis."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import httpx
import pytest
from limits.storage import storage_from_string

from tests.conftest import serve
from tests.factories import jpeg_bytes

REDIS = os.environ.get("TEST_REDIS_URL")


@pytest.fixture(params=["memory", "redis"])
async def limited(request: pytest.FixtureRequest, make_settings) -> AsyncIterator[httpx.AsyncClient]:
    redis_url = None
    if request.param == "redis":
        if not REDIS:
            pytest.skip("TEST_REDIS_URL is not set (.ci/run starts a Redis server)")
        redis_url = REDIS
    settings = make_settings(
        redis_url=redis_url,
        rate_limit_upload="3/minute",
        rate_limit_analyze="2/minute",
        rate_limit_auth="4/minute",
        rate_limit_login_username="3/minute",
    )
    if redis_url:
        # Every test starts from empty windows (limits are keyed by route class and address).
        await storage_from_string(f"async+{redis_url}").reset()
    async with serve(settings) as c:
        yield c


async def test_uploads_past_the_limit_are_429_with_headers(limited: httpx.AsyncClient) -> None:
    ip = {"X-Forwarded-For": "unused"}  # the limit is per client address (the ASGI client)
    responses = [
        await limited.post("/upload", files={"file": ("a.jpg", jpeg_bytes())}, headers=ip) for _ in range(4)
    ]
    assert [r.status_code for r in responses[:3]] == [201, 201, 201]
    assert responses[0].headers["ratelimit-policy"] == '"upload";q=3;w=60'
    assert responses[2].headers["ratelimit"].startswith('"upload";r=0;t=')
    refused = responses[3]
    assert refused.status_code == 429 and refused.json()["code"] == "too_many_requests"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["content-type"] == "application/problem+json"


async def test_cache_hits_are_not_counted_as_analyses(limited: httpx.AsyncClient) -> None:
    ids = [
        (await limited.post("/upload", files={"file": (f"{i}.jpg", jpeg_bytes(color=(i, 1, 1)))})).json()[
            "image_id"
        ]
        for i in range(3)
    ]
    first = await limited.post("/analyze", json={"image_id": ids[0]})
    repeats = [await limited.post("/analyze", json={"image_id": ids[0]}) for _ in range(5)]
    assert first.status_code == 200 and {r.status_code for r in repeats} == {200}
    assert (await limited.post("/analyze", json={"image_id": ids[1]})).status_code == 200
    assert (await limited.post("/analyze", json={"image_id": ids[2]})).status_code == 429


async def test_logins_are_limited_per_username_and_address(limited: httpx.AsyncClient) -> None:
    codes = [
        (await limited.post("/v1/login", json={"username": "victim", "password": "guess-guess"})).status_code
        for _ in range(5)
    ]
    assert codes[:3] == [401, 401, 401] and codes[3] == 429
