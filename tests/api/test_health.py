"""Health routes and request context (request id, CORS)."""

from __future__ import annotations

import httpx

from app.main import create_app
from tests.conftest import serve


async def test_health_routes(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).json() == {"status": "healthy"}
    assert (await client.get("/healthz")).status_code == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert {c["name"] for c in ready.json()["checks"]} == {
        "data_dir_writable",
        "free_disk",
        "analyzers_loaded",
    }


async def test_readyz_fails_with_reasons(make_settings) -> None:
    async with serve(make_settings(min_free_disk_bytes=1 << 60)) as c:
        resp = await c.get("/readyz")
    assert resp.status_code == 503
    failing = [check["name"] for check in resp.json()["checks"] if not check["ok"]]
    assert failing == ["free_disk"]


async def test_readyz_is_503_before_startup(make_settings) -> None:
    app = create_app(make_settings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        resp = await c.get("/readyz")
    assert resp.status_code == 503
    assert resp.json()["code"] == "service_unavailable"


async def test_request_id_is_echoed_or_created(client: httpx.AsyncClient) -> None:
    resp = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert resp.headers["x-request-id"] == "abc-123"
    created = (await client.get("/health")).headers["x-request-id"]
    assert len(created) == 32
    hostile = await client.get("/health", headers={"X-Request-ID": "a b\tc" * 50})
    assert hostile.headers["x-request-id"] != "a b\tc" * 50


async def test_cors_preflight(client: httpx.AsyncClient) -> None:
    resp = await client.options(
        "/api/v1/upload",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert resp.status_code == 200
    assert resp.headers["access-control-allow-origin"] in ("*", "https://app.example")


async def test_unknown_route_and_method_are_problems(client: httpx.AsyncClient) -> None:
    missing = await client.get("/nope")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
    wrong = await client.get("/upload")
    assert wrong.status_code == 405
    assert wrong.headers["content-type"] == "application/problem+json"


async def test_head_works_for_probes(client: httpx.AsyncClient) -> None:
    for path in ("/health", "/healthz", "/readyz"):
        resp = await client.head(path)
        assert resp.status_code == 200, path
