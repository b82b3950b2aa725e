"""Analyze (seed 001 `/analyze`, seed 002 `/api/v1/analyze`): contract, cache, single-flight."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import httpx
import pytest

from app.analyzers.registry import AnalyzerRegistry
from app.analyzers.skin import SKIN_ISSUES, SKIN_TYPES, skin_analysis
from app.main import create_app
from tests.conftest import http_scope, serve
from tests.factories import CountingSkin, SlowModel, photo_jpeg


async def upload(client: httpx.AsyncClient) -> str:
    resp = await client.post("/upload", files={"file": ("p.jpg", photo_jpeg(), "image/jpeg")})
    assert resp.status_code == 201
    return resp.json()["image_id"]


@pytest.mark.parametrize("path", ["/analyze", "/api/v1/analyze"])
async def test_analyze_contract(client: httpx.AsyncClient, data_dir: Path, path: str) -> None:
    image_id = await upload(client)
    resp = await client.post(path, json={"image_id": image_id})
    assert resp.status_code == 200
    body = resp.json()
    assert list(body) == ["image_id", "skin_type", "issues", "confidence", "analyzer", "analyzer_version"]
    assert body["image_id"] == image_id
    assert body["skin_type"] in SKIN_TYPES
    assert set(body["issues"]) <= set(SKIN_ISSUES) and len(body["issues"]) <= 3
    assert 0.70 <= body["confidence"] <= 0.99
    assert body["analyzer"] == "skin"
    expected = skin_analysis(image_id)
    assert (body["skin_type"], body["issues"], body["confidence"]) == (
        expected.skin_type,
        expected.issues,
        expected.confidence,
    )
    assert resp.headers["x-cache"] == "MISS"
    assert "cache" not in json.dumps(body).lower()
    assert (data_dir / "analysis" / f"{image_id}.json").read_bytes() == resp.content


async def test_repeat_is_byte_identical_hit(client: httpx.AsyncClient) -> None:
    image_id = await upload(client)
    first = await client.post("/analyze", json={"image_id": image_id})
    again = await client.post("/api/v1/analyze", json={"image_id": image_id, "analyzer": "skin"})
    assert again.headers["x-cache"] == "HIT"
    assert again.content == first.content


async def test_cache_survives_restart(make_settings, data_dir: Path) -> None:
    async def session(image_id: str | None) -> tuple[str, httpx.Response]:
        async with serve(make_settings()) as c:
            image_id = image_id or await upload(c)
            return image_id, await c.post("/analyze", json={"image_id": image_id})

    image_id, first = await session(None)
    _, second = await session(image_id)
    assert first.headers["x-cache"] == "MISS"
    assert second.headers["x-cache"] == "HIT"
    assert second.content == first.content


async def test_fifty_concurrent_first_requests_compute_once(settings) -> None:
    skin = CountingSkin(delay=0.05)
    async with serve(settings, AnalyzerRegistry([skin])) as client:
        image_id = await upload(client)
        responses = await asyncio.gather(
            *(client.post("/analyze", json={"image_id": image_id}) for _ in range(50))
        )
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    assert [r.headers["x-cache"] for r in responses].count("MISS") == 1
    assert skin.calls == 1


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({}, ["image_id"]),
        ({"image_id": "abc123-def456-..."}, ["image_id"]),
        ({"image_id": str(uuid.uuid1())}, ["image_id"]),
        ({"image_id": "{" + str(uuid.uuid4()) + "}"}, ["image_id"]),
        ({"image_id": 12345}, ["image_id"]),
        ({"image_id": None}, ["image_id"]),
        ({"image_id": str(uuid.uuid4()), "analyzer": 5}, ["analyzer"]),
        ({"image_id": str(uuid.uuid4()), "surprise": 1}, ["surprise"]),
        ([], ["body"]),
    ],
)
async def test_invalid_requests_are_400_with_fields(client: httpx.AsyncClient, payload, fields) -> None:
    resp = await client.post("/analyze", json=payload)
    assert resp.status_code == 400
    assert resp.headers["content-type"] == "application/problem+json"
    problem = resp.json()
    assert problem["code"] == "validation_error"
    assert problem["fields"] == fields
    assert problem["detail"]


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"image_id": ', "application/json"),
        (b"not json", "application/json"),
        (b"", "application/json"),
        (b"image_id=x", "application/x-www-form-urlencoded"),
    ],
)
async def test_malformed_bodies_are_400(client: httpx.AsyncClient, content: bytes, content_type: str) -> None:
    resp = await client.post("/analyze", content=content, headers={"Content-Type": content_type})
    assert resp.status_code == 400
    assert resp.json()["code"] == "validation_error"


async def test_unknown_image_is_404(client: httpx.AsyncClient, data_dir: Path) -> None:
    resp = await client.post("/analyze", json={"image_id": str(uuid.uuid4())})
    assert resp.status_code == 404
    assert resp.json()["code"] == "image_not_found"
    assert not any((data_dir / "analysis").iterdir())


async def test_unknown_analyzer_names_available_ones(client: httpx.AsyncClient) -> None:
    image_id = await upload(client)
    resp = await client.post("/api/v1/analyze", json={"image_id": image_id, "analyzer": "tarot"})
    assert resp.status_code == 400
    problem = resp.json()
    assert problem["code"] == "unknown_analyzer"
    assert "skin" in problem["detail"] and {"skin", "classify"} <= set(problem["available"])


async def test_unexpected_params_are_400(client: httpx.AsyncClient) -> None:
    image_id = await upload(client)
    resp = await client.post("/api/v1/analyze", json={"image_id": image_id, "params": {"top_k": 3}})
    assert resp.status_code == 400
    assert resp.json()["fields"] == ["params.top_k"]


async def test_oversized_json_body_is_413(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/analyze",
        content=b'{"image_id":"' + b"a" * 100_000 + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert resp.status_code == 413

    async def chunked():
        for _ in range(100):
            yield b" " * 1000

    resp = await client.post("/analyze", content=chunked(), headers={"Content-Type": "application/json"})
    assert resp.status_code == 413
    assert resp.json()["code"] == "payload_too_large"


@pytest.mark.parametrize("origin", [None, "https://app.example"], ids=["lean", "cors"])
async def test_a_client_that_hangs_up_during_an_analysis_is_no_error(
    make_settings, caplog: pytest.LogCaptureFixture, origin: str | None
) -> None:
    slow = SlowModel()
    application = create_app(make_settings(), registry=AnalyzerRegistry([CountingSkin(), slow]))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            image_id = await upload(c)
        body = json.dumps({"image_id": image_id, "analyzer": "slow"}).encode()
        messages = iter([{"type": "http.request", "body": body, "more_body": False}])
        sent: list[dict] = []

        async def receive() -> dict:
            message = next(messages, None)
            if message is not None:
                return message
            while not slow.started:  # the analysis runs: now the client hangs up
                await asyncio.sleep(0.01)
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message)

        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers += [(b"origin", origin.encode())] if origin else []
        scope = http_scope("POST", "/api/v1/analyze", headers)
        await application(scope, receive, send)
        slow.release.set()
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"])["code"] == "client_disconnected"
    assert "Traceback" not in caplog.text and "unhandled" not in caplog.text
