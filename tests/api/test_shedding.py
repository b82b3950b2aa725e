"""Shedding before reading: a request whose analysis queue is full, or would wait past
`ANALYSIS_MAX_QUEUE_WAIT_SECONDS`, is refused (503 `queue_full`, Retry-After) before its body
is read; cached results are never shed."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI

from app.analyzers.registry import AnalyzerRegistry
from app.main import create_app
from tests.conftest import files_under, http_scope
from tests.factories import CountingSkin, SlowModel, jpeg_bytes

BOUNDARY = b"shed-boundary-5e1f"


@dataclass
class RawExchange:
    """One request driven straight through the ASGI app: what it read and what it answered."""

    chunks: list[bytes]
    reads: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)

    async def receive(self) -> dict[str, Any]:
        self.reads += 1
        if self.reads <= len(self.chunks):
            return {"type": "http.request", "body": self.chunks[self.reads - 1], "more_body": True}
        await asyncio.Event().wait()  # the rest of the body never comes
        return {}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return self.sent[0]["status"]

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.sent[0]["headers"]}

    @property
    def body(self) -> dict[str, Any]:
        return json.loads(b"".join(m.get("body", b"") for m in self.sent[1:]))


async def drive(
    app: FastAPI, path: str, content_type: bytes, chunks: list[bytes], declared: int
) -> RawExchange:
    exchange = RawExchange(chunks)
    headers = [(b"content-type", content_type), (b"content-length", str(declared).encode())]
    await asyncio.wait_for(app(http_scope("POST", path, headers), exchange.receive, exchange.send), 5)
    return exchange


def multipart_head(field_name: str, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{field_name}"' + (f'; filename="{filename}"' if filename else "")
    head = b"--" + BOUNDARY + b"\r\nContent-Disposition: " + disposition.encode() + b"\r\n"
    return head + (b"Content-Type: image/jpeg\r\n" if filename else b"") + b"\r\n"


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


@asynccontextmanager
async def full_classify_queue(
    make_settings: Callable[..., Any],
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, str]]:
    """An app whose `classify` queue is full (one run holding the thread, one waiting), with the
    id of an image whose classification is cached on disk (not in memory)."""
    model = SlowModel("classify")
    settings = make_settings(analysis_threads=1, analysis_queue_limit=1, analysis_memory_cache_entries=0)
    app = create_app(settings, registry=AnalyzerRegistry([CountingSkin(), model]))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:

            async def upload(shade: int) -> str:
                resp = await c.post("/upload", files={"file": ("p.jpg", jpeg_bytes(color=(shade, 1, 2)))})
                assert resp.status_code == 201
                return resp.json()["image_id"]

            cached, running, queued = [await upload(i) for i in range(3)]
            model.release.set()
            first = await c.post("/api/v1/analyze", json={"image_id": cached, "analyzer": "classify"})
            assert first.status_code == 200 and first.headers["x-cache"] == "MISS"
            model.release.clear()
            work = [
                asyncio.ensure_future(c.post("/api/v1/analyze", json={"image_id": i, "analyzer": "classify"}))
                for i in (running, queued)
            ]
            lanes = app.state.services.lanes
            await wait_until(lambda: len(model.started) == 2 and lanes.heavy.depth("classify") == 1)
            try:
                yield app, c, cached
            finally:
                model.release.set()
                done = await asyncio.gather(*work)
            assert [r.status_code for r in done] == [200, 200]


def assert_shed(exchange: RawExchange) -> None:
    assert exchange.status == 503, exchange.sent
    assert exchange.headers["content-type"] == "application/problem+json"
    assert int(exchange.headers["retry-after"]) >= 1
    assert exchange.body["code"] == "queue_full"


async def test_classify_is_refused_before_its_body_is_read(make_settings, data_dir) -> None:
    async with full_classify_queue(make_settings) as (app, _c, _cached):
        before = files_under(data_dir / "images")
        body = multipart_head("file", "p.jpg") + jpeg_bytes()
        shed = await drive(app, "/v1/classify", b"multipart/form-data; boundary=" + BOUNDARY, [body], 10**6)
        assert_shed(shed)
        assert shed.reads == 0  # not one byte of the upload was asked for
        url = await drive(app, "/v1/classify", b"application/json", [b'{"url": "https://x.test/a.jpg"}'], 31)
        assert_shed(url)
        assert url.reads == 0
        assert files_under(data_dir / "images") == before


async def test_forward_with_an_image_is_refused_before_the_image_is_read(make_settings, data_dir) -> None:
    async with full_classify_queue(make_settings) as (app, c, _cached):
        # The first chunk holds the image part's headers: the rest of the image is never asked for.
        chunks = [multipart_head("image", "p.jpg") + jpeg_bytes()[:100], jpeg_bytes()[100:]]
        shed = await drive(app, "/forward", b"multipart/form-data; boundary=" + BOUNDARY, chunks, 10**6)
        assert_shed(shed)
        assert shed.reads == 1
        assert not [p for p in files_under(data_dir) if ".tmp-" in p]
        # A form that runs no analyzer is served.
        text = await c.post("/forward", files={"data": (None, '{"a": 1}')})
        assert text.status_code == 200 and text.json()["result"]["received_data"] == {"a": 1}


async def test_cached_results_are_never_shed_and_misses_are_refused_at_once(make_settings) -> None:
    async with full_classify_queue(make_settings) as (_app, c, cached):
        hit = await c.post("/api/v1/analyze", json={"image_id": cached, "analyzer": "classify"})
        assert hit.status_code == 200 and hit.headers["x-cache"] == "HIT"
        other = await c.post("/upload", files={"file": ("p.jpg", jpeg_bytes(color=(9, 9, 9)))})
        started = time.monotonic()
        miss = await c.post(
            "/api/v1/analyze", json={"image_id": other.json()["image_id"], "analyzer": "classify"}
        )
        assert time.monotonic() - started < 2  # at once, not after the queue's wait
        assert miss.status_code == 503 and miss.json()["code"] == "queue_full"
        assert int(miss.headers["retry-after"]) >= 1
        cheap = await c.post("/api/v1/analyze", json={"image_id": cached})  # skin: its own lane
        assert cheap.status_code == 200


async def test_a_contour_submit_is_refused_before_its_body_is_read(make_settings, data_dir) -> None:
    app = create_app(make_settings(job_max_pending=0), registry=AnalyzerRegistry([CountingSkin()]))
    async with app.router.lifespan_context(app):
        shed = await drive(app, "/api/v1/frontal/crop/submit", b"application/json", [b'{"image": "'], 10**6)
    assert_shed(shed)
    assert shed.reads == 0
    assert not list((data_dir / "jobs" / "inputs").iterdir())
