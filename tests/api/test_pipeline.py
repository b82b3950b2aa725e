"""The request pipeline (app/api/pipeline.py): route policies on paths with parameters, HEAD,
the query parameter of a lean route, one body cap for a lean route."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import http_scope, serve
from tests.factories import jpeg_bytes


async def test_a_path_with_parameters_gets_its_routers_rate_limit_on_get_and_head(make_settings) -> None:
    async with serve(make_settings(rate_limit_default="3/minute")) as client:
        upload = await client.post("/upload", files={"file": ("a.jpg", jpeg_bytes())})
        image_id = upload.json()["image_id"]
        first = await client.get(f"/api/v1/images/{image_id}")
        assert first.status_code == 200
        assert first.headers["ratelimit-policy"] == '"default";q=3;w=60'
        head = await client.head(f"/api/v1/images/{image_id}/content")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["ratelimit"].startswith('"default";r=1;')
        await client.get(f"/api/v1/images/{image_id}")
        refused = await client.get(f"/api/v1/images/{image_id}")
        assert refused.status_code == 429 and refused.json()["code"] == "too_many_requests"
        assert refused.headers["x-request-id"] and refused.headers["x-content-type-options"] == "nosniff"


async def test_a_bad_top_k_on_the_lean_classify_route_is_a_400_naming_it(client: httpx.AsyncClient) -> None:
    for value in ("0", "1001", "x"):
        resp = await client.post(f"/v1/classify?top_k={value}", files={"file": ("a.jpg", jpeg_bytes())})
        assert resp.status_code == 400, resp.text
        assert resp.json()["code"] == "validation_error" and resp.json()["fields"] == ["top_k"]
    assert (await client.get("/api/v1/images")).json()["total"] == 0  # nothing was stored


async def test_an_analyze_body_over_the_cap_is_413_declared_or_streamed(make_settings) -> None:
    async with serve(make_settings(max_json_body_bytes=1024)) as client:
        body = b'{"image_id": "' + b"a" * 2000 + b'"}'
        declared = await client.post("/analyze", content=body, headers={"Content-Type": "application/json"})

        async def chunks():
            yield body[:500]
            yield body[500:]

        streamed = await client.post(
            "/analyze", content=chunks(), headers={"Content-Type": "application/json"}
        )
    for resp in (declared, streamed):
        assert resp.status_code == 413
        assert resp.json()["detail"] == "The request body exceeds 1024 bytes"


@pytest.mark.parametrize("path", ["/api/v1/analyze", "/api/v1/frontal/crop/submit"])
async def test_a_body_sent_a_byte_at_a_time_holds_about_its_size(app: FastAPI, path: str) -> None:
    """A JSON body read whole (by the pipeline for /analyze, by the route for a contour submit)
    costs memory near its size whatever its chunks: not an object per chunk (~40 bytes for a
    byte sent), a cheap amplification that the body caps, which count bytes, would miss."""
    body = json.dumps({"image_id": "0" * 36, "pad": "x" * 50_000}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]

    def messages(pieces: list[bytes]) -> Iterator[dict]:
        last = len(pieces) - 1
        return iter(
            [{"type": "http.request", "body": p, "more_body": i < last} for i, p in enumerate(pieces)]
        )

    async def call(messages: Iterator[dict]) -> int:
        sent: list[dict] = []

        async def receive() -> dict:
            return next(messages, None) or {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message)

        await app(http_scope("POST", path, headers), receive, send)
        return sent[0]["status"]

    assert await call(messages([body])) < 500  # warm: what a first request builds is not counted
    bytewise = messages([body[i : i + 1] for i in range(len(body))])  # the client's: not counted
    tracemalloc.start()
    try:
        status = await call(bytewise)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status < 500
    assert peak < 8 * len(body), (peak, len(body))
