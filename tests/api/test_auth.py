"""API keys (seed 002): required everywhere but health and docs when API_KEYS is set."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import serve
from tests.factories import photo_jpeg

KEY = "interview-test-key-123"


@pytest.fixture
async def keyed(make_settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(make_settings(api_keys=[KEY, "second-key"])) as c:
        yield c


async def test_protected_routes_need_a_key(keyed: httpx.AsyncClient) -> None:
    for method, path in [
        ("POST", "/upload"),
        ("POST", "/api/v1/upload"),
        ("POST", "/analyze"),
        ("POST", "/api/v1/analyze"),
        ("GET", "/api/v1/images/3fa85f64-5717-4562-b3fc-2c963f66afa6"),
    ]:
        for headers in ({}, {"X-API-KEY": "wrong"}, {"X-API-KEY": KEY + "x"}):
            resp = await keyed.request(method, path, headers=headers)
            assert resp.status_code == 401, (method, path, headers)
            assert resp.headers["content-type"] == "application/problem+json"
            assert resp.json()["code"] == "unauthorized"


async def test_seed_002_flow_with_key(keyed: httpx.AsyncClient) -> None:
    headers = {"X-API-KEY": KEY}
    up = await keyed.post(
        "/api/v1/upload", headers=headers, files={"file": ("p.jpg", photo_jpeg(), "image/jpeg")}
    )
    assert up.status_code == 201
    image_id = up.json()["image_id"]
    resp = await keyed.post("/api/v1/analyze", headers=headers, json={"image_id": image_id})
    assert resp.status_code == 200
    # Images belong to the principal that uploaded them: another key does not see them.
    other = await keyed.post(
        "/api/v1/analyze", headers={"X-API-KEY": "second-key"}, json={"image_id": image_id}
    )
    assert other.status_code == 404 and other.json()["code"] == "image_not_found"
    again = await keyed.post("/api/v1/analyze", headers=headers, json={"image_id": image_id})
    assert again.content == resp.content and again.headers["x-cache"] == "HIT"


async def test_open_routes_need_no_key(keyed: httpx.AsyncClient) -> None:
    for path in ("/health", "/healthz", "/readyz", "/docs", "/redoc", "/openapi.json"):
        assert (await keyed.get(path)).status_code == 200, path


async def test_open_when_no_keys_configured(client: httpx.AsyncClient) -> None:
    resp = await client.post("/upload", files={"file": ("p.jpg", photo_jpeg(), "image/jpeg")})
    assert resp.status_code == 201
