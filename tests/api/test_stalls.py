"""A stalled request body is cut with 408 and leaves nothing on disk."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from tests.conftest import files_under, serve
from tests.factories import photo_jpeg

BOUNDARY = "stall-boundary"


async def stalling(first: bytes) -> AsyncIterator[bytes]:
    yield first
    await asyncio.sleep(30)  # the client goes silent
    yield b"never"


async def test_a_stalled_upload_is_cut_and_its_temp_file_removed(make_settings, data_dir: Path) -> None:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode() + photo_jpeg()[:5000]
    async with serve(make_settings(body_read_timeout_seconds=0.5)) as c:
        resp = await asyncio.wait_for(
            c.post(
                "/upload",
                content=stalling(head),
                headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
            ),
            10,
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
