"""Request bodies that stall or crawl are cut with 408 and leave nothing on disk, on every route."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.api.stalls import StallGuard
from app.core.errors import RequestTimeout
from tests.conftest import files_under, serve
from tests.factories import photo_jpeg
from tests.processes import Server

BOUNDARY = "stall-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
# A window of 0.5 s must bring 1,000 bytes once 0.5 s have passed: a trickle sends 10 bytes
# every 0.2 s (25 bytes a window, 40 times too few), a good client sends its body at once.
CRAWL = {"body_min_rate_bytes": 1000, "body_min_rate_window_seconds": 0.5, "body_grace_seconds": 0.5}


def upload_head() -> bytes:
    """A file part's head and its first 75 KB: past what the body stream gathers in memory
    (16 KiB), so the upload has a temp file on disk when it stalls."""
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + photo_jpeg()[:5000]
        + b"\0" * 70_000
    )


async def stalling(first: bytes) -> AsyncIterator[bytes]:
    yield first
    await asyncio.sleep(30)  # the client goes silent
    yield b"never"


async def trickling(first: bytes, chunk: bytes = b"0123456789", every: float = 0.2) -> AsyncIterator[bytes]:
    """`first`, then `chunk` every `every` seconds, forever (a slowloris body)."""
    yield first
    while True:
        await asyncio.sleep(every)
        yield chunk


async def test_a_stalled_upload_is_cut_and_its_temp_file_removed(make_settings, data_dir: Path) -> None:
    async with serve(make_settings(body_read_timeout_seconds=0.5)) as c:
        resp = await asyncio.wait_for(
            c.post("/upload", content=stalling(upload_head()), headers={"Content-Type": MULTIPART}), 10
        )
        assert resp.status_code == 408 and resp.json()["code"] == "request_timeout"
        # The server goes on serving.
        ok = await c.post("/upload", files={"file": ("b.jpg", photo_jpeg(), "image/jpeg")})
        assert ok.status_code == 201
    assert files_under(data_dir / "images") == [f"{ok.json()['image_id']}.jpg"]


async def test_a_stalled_json_body_is_cut(make_settings) -> None:
    async with serve(make_settings(body_read_timeout_seconds=0.5)) as c:
        resp = await asyncio.wait_for(
            c.post(
                "/analyze", content=stalling(b'{"image_id": '), headers={"Content-Type": "application/json"}
            ),
            10,
        )
    assert resp.status_code == 408 and resp.json()["code"] == "request_timeout"


async def test_a_trickled_upload_is_cut_after_the_grace_and_its_temp_file_removed(
    make_settings, data_dir: Path
) -> None:
    # It never goes silent for the stall timeout (15 s), but it is far below the minimum rate.
    async with serve(make_settings(**CRAWL)) as c:
        resp = await asyncio.wait_for(
            c.post("/api/v1/upload", content=trickling(upload_head()), headers={"Content-Type": MULTIPART}),
            10,
        )
        assert resp.status_code == 408
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.json()["code"] == "request_timeout" and "slower than 1000 bytes" in resp.json()["detail"]
        assert resp.headers["connection"] == "close"  # the rest of its body is never read
        ok = await c.post("/api/v1/upload", files={"file": ("b.jpg", photo_jpeg(), "image/jpeg")})
        assert ok.status_code == 201
        metrics = (await c.get("/metrics")).text
    assert files_under(data_dir / "images") == [f"{ok.json()['image_id']}.jpg"]
    assert 'http_request_bodies_cut_total{reason="too_slow"}' in metrics


async def test_trickled_bodies_are_cut_on_streamed_and_buffered_routes(make_settings) -> None:
    form_field = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="data"\r\n\r\n{{"text": "'
    form_body = trickling(form_field.encode(), b"aaaaaaaaaa")
    async with serve(make_settings(**CRAWL)) as c:
        answers = await asyncio.wait_for(
            asyncio.gather(
                # streamed by the route (seed 000's and seed 003's forms); buffered by the middleware
                c.post("/v1/classify", content=trickling(upload_head()), headers={"Content-Type": MULTIPART}),
                c.post("/forward", content=form_body, headers={"Content-Type": MULTIPART}),
                c.post(
                    "/v1/register",
                    content=trickling(b'{"username": "'),
                    headers={"Content-Type": "application/json"},
                ),
            ),
            10,
        )
    assert [(r.status_code, r.json()["code"]) for r in answers] == [(408, "request_timeout")] * 3


async def test_a_body_arriving_steadily_is_still_cut_at_the_deadline(make_settings, data_dir: Path) -> None:
    # 1 KB every 0.1 s: far above the minimum rate, but it never ends.
    settings = make_settings(**CRAWL, request_body_deadline_seconds=1.5)
    async with serve(settings) as c:
        resp = await asyncio.wait_for(
            c.post(
                "/api/v1/upload",
                content=trickling(upload_head(), b"\0" * 1000, every=0.1),
                headers={"Content-Type": MULTIPART},
            ),
            10,
        )
    assert resp.status_code == 408 and "longer than 1.5 s" in resp.json()["detail"]
    assert files_under(data_dir / "images") == []


async def test_a_body_sent_at_a_good_rate_passes_the_rate_check(make_settings) -> None:
    # 20 KB every 0.1 s through several rate windows: 400 times the minimum.
    body = upload_head()[:-75_000] + photo_jpeg() + f"\r\n--{BOUNDARY}--\r\n".encode()

    async def steady() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 20_000):
            yield body[start : start + 20_000]
            await asyncio.sleep(0.1)

    async with serve(make_settings(**CRAWL)) as c:
        resp = await c.post("/api/v1/upload", content=steady(), headers={"Content-Type": MULTIPART})
    assert resp.status_code == 201, resp.text


@pytest.mark.slow
def test_a_trickled_upload_to_a_real_server_gets_408_and_its_connection_closed(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {"ANALYZERS": "skin", **{key.upper(): str(value) for key, value in CRAWL.items()}}
    server = Server(data_dir, tmp_path / "server.log", env)
    try:
        server.wait_ready(timeout=60)
        body = upload_head()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(
                b"POST /api/v1/upload HTTP/1.1\r\nHost: x\r\n"
                + f"Content-Type: {MULTIPART}\r\nContent-Length: {len(body) + 100_000}\r\n\r\n".encode()
                + body
            )
            answer = b""
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # a byte every 0.2 s until the server answers and closes
                try:
                    s.sendall(b"x")
                except (BrokenPipeError, ConnectionResetError):
                    break
                s.settimeout(0.2)
                try:
                    data = s.recv(65536)
                except TimeoutError:
                    continue
                except ConnectionResetError:
                    break
                if not data:
                    break
                answer += data
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), answer
        assert json.loads(payload)["code"] == "request_timeout"
        assert files_under(data_dir / "images") == []
    finally:
        server.stop()


async def test_reads_one_after_another_share_one_sweeper_which_ends_when_idle() -> None:
    """A busy service keeps one sweeping task: a body that has already arrived is read before a
    new sweeper first runs, and a sweeper that ended at once would be made again for it."""
    guard = StallGuard(timeout=0.2)  # sweeps every 0.05 s

    async def arrived() -> dict[str, object]:
        return {"type": "http.request", "body": b"x", "more_body": False}

    sweepers = set()
    for _ in range(20):
        await guard.body(arrived)()
        sweepers.add(guard._sweeper)
        await asyncio.sleep(0)  # the sweeper's first turn
    assert len(sweepers) == 1
    sweeper = sweepers.pop()
    assert sweeper is not None
    await asyncio.wait_for(sweeper, 30)  # a period with no read in progress ends it
    assert guard._reading == {}


def test_a_guard_whose_first_loop_closed_under_its_sweeper_still_cuts_stalled_reads() -> None:
    """A sweeper left pending on a loop closed without cancelling it never ends: the next loop's
    reads must start their own, or a stalled body there is never cut."""
    guard = StallGuard(timeout=0.2)

    async def arrived() -> dict[str, object]:
        return {"type": "http.request", "body": b"x", "more_body": False}

    first = asyncio.new_event_loop()
    first.run_until_complete(guard.body(arrived)())  # its sweeper now waits for a period...
    first.close()  # ...and the loop is closed under it

    async def stalled() -> None:
        async def never() -> dict[str, object]:
            await asyncio.get_running_loop().create_future()
            return {}

        with pytest.raises(RequestTimeout):
            await asyncio.wait_for(guard.body(never)(), 30)

    asyncio.run(stalled())
