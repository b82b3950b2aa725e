"""The analysis folder's layout through HTTP: `{id}.json` for the default analyzer, one folder per
image for the rest, a data dir of the earlier flat layout taken over at start-up, and a delete
that removes exactly one image's results."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
from PIL import Image
from skimage import data as skimage_data

from tests.conftest import files_under, serve
from tests.factories import encode, jpeg_bytes


async def upload(c: httpx.AsyncClient, body: bytes) -> str:
    resp = await c.post("/api/v1/upload", files={"file": ("a.jpg", body, "image/jpeg")})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["image_id"])


async def analyze(c: httpx.AsyncClient, image_id: str, analyzer: str = "skin") -> httpx.Response:
    resp = await c.post("/api/v1/analyze", json={"image_id": image_id, "analyzer": analyzer})
    assert resp.status_code == 200, resp.text
    return resp


async def test_a_data_dir_of_the_flat_layout_keeps_its_results(settings, data_dir: Path) -> None:
    analysis = data_dir / "analysis"
    async with serve(settings) as c:
        face_id = await upload(c, encode(Image.fromarray(skimage_data.astronaut()), "JPEG"))
        other_id = await upload(c, jpeg_bytes())
        face = await analyze(c, face_id, "face")
        skin = await analyze(c, face_id)
        other = await analyze(c, other_id)
    assert files_under(analysis) == sorted([f"{face_id}.json", f"{face_id}/face.json", f"{other_id}.json"])
    # As an earlier version left it: every result flat in the folder.
    os.replace(analysis / face_id / "face.json", analysis / f"{face_id}.face.json")
    os.rmdir(analysis / face_id)
    async with serve(settings) as c:
        assert files_under(analysis) == sorted(
            [f"{face_id}.json", f"{face_id}/face.json", f"{other_id}.json"]
        )
        again = await c.post("/api/v1/analyze", json={"image_id": face_id, "analyzer": "face"})
        assert (again.headers["x-cache"], again.content) == ("HIT", face.content)
        assert (await analyze(c, face_id)).content == skin.content
        assert (await c.delete(f"/api/v1/images/{face_id}")).status_code == 204
        assert files_under(analysis) == [f"{other_id}.json"]
        assert sorted(p.name for p in analysis.iterdir()) == [f"{other_id}.json"]  # no empty folder left
        assert (await analyze(c, other_id)).content == other.content
