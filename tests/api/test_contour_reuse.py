"""Seed 004's contour jobs reuse the result of a near-duplicate image's job (issue 18): a phone's
re-encoding of a photo is answered by the earlier job, says so, is free, and stays in its scope."""

from __future__ import annotations

import base64
import sqlite3
from contextlib import closing
from pathlib import Path

import anyio
import httpx
from PIL import Image
from skimage import data

from app.services.images.perceptual import distance, hash_image
from tests.conftest import serve
from tests.factories import encode

SUBMIT = "/api/v1/frontal/crop/submit"
STATUS = "/api/v1/frontal/crop/status/{}"
PASSWORD = "correct horse battery staple"


def jpeg(pixels: Image.Image, quality: int) -> bytes:
    return encode(pixels, "JPEG", quality=quality)


ASTRONAUT = Image.fromarray(data.astronaut())
ORIGINAL = jpeg(ASTRONAUT, 95)
REENCODED = jpeg(ASTRONAUT, 70)  # what an app's re-encoding does: other bytes, same pixels size
ANOTHER_APP = jpeg(ASTRONAUT, 80)  # a third encoding: content no job has had yet
SMALLER = jpeg(ASTRONAUT.resize((384, 384), Image.Resampling.LANCZOS), 95)  # near, another size
OTHER = jpeg(Image.fromarray(data.camera()).convert("RGB"), 95)  # another photo of the same size


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


async def login(client: httpx.AsyncClient, username: str) -> dict[str, str]:
    user = {"username": username, "password": PASSWORD}
    assert (await client.post("/api/v1/auth/register", json=user)).status_code == 201
    token = (await client.post("/api/v1/auth/login", json=user)).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


async def submit(
    client: httpx.AsyncClient, image: bytes, who: dict[str, str], **extra: object
) -> httpx.Response:
    resp = await client.post(SUBMIT, json={"image": b64(image), **extra}, headers=who)
    assert resp.status_code == 202, resp.text
    return resp


async def finished(client: httpx.AsyncClient, job_id: str, who: dict[str, str]) -> dict:
    with anyio.fail_after(60):
        while True:
            resp = await client.get(STATUS.format(job_id), headers=who)
            assert resp.status_code == 200, resp.text
            if resp.json()["status"] in ("completed", "failed"):
                return resp.json()
            await anyio.sleep(0.05)


async def credits(client: httpx.AsyncClient, who: dict[str, str], expected: int) -> int:
    """The balance once it is `expected` (a job's charge is settled just after its record says
    completed), else what it is after a while."""
    with anyio.move_on_after(10):
        while (balance := (await client.get("/v1/me", headers=who)).json()["credits"]) != expected:
            await anyio.sleep(0.05)
    return int(balance)


def test_the_photos_are_near_duplicates_only_of_each_other() -> None:
    for near in (REENCODED, ANOTHER_APP, SMALLER):  # within the default PERCEPTUAL_REUSE_DISTANCE
        assert distance(hash_image(ORIGINAL).hex, hash_image(near).hex) <= 15
    assert distance(hash_image(ORIGINAL).hex, hash_image(OTHER).hex) > 64


async def check_reuse(client: httpx.AsyncClient) -> None:
    """The scenario both job engines must pass (each user starts with 5 credits)."""
    carol, dave = await login(client, "carol"), await login(client, "dave")
    first = await submit(client, ORIGINAL, carol)
    assert "x-cache" not in first.headers
    computed = await finished(client, first.json()["job_id"], carol)
    assert computed["status"] == "completed" and computed["reused_from"] is None, computed
    assert await credits(client, carol, 4) == 4

    again = await submit(client, REENCODED, carol)
    assert again.headers["x-cache"] == "REUSED" and again.json()["status"] == "completed"
    reused = await finished(client, again.json()["job_id"], carol)
    assert reused["result"] == computed["result"]
    assert reused["reused_from"]["job_id"] == first.json()["job_id"]
    assert 0 <= reused["reused_from"]["distance"] <= 15
    assert {k for k in reused if k != "reused_from"} == {k for k in computed if k != "reused_from"}
    assert await credits(client, carol, 4) == 4  # free, like a cache hit

    # reuse_distance=0 (no reuse for this job), then the opt-out: the photo's own job, charged once
    tight = await submit(client, REENCODED, carol, reuse_distance=0)
    assert "x-cache" not in tight.headers
    own = await finished(client, tight.json()["job_id"], carol)
    assert own["status"] == "completed" and own["reused_from"] is None and own["result"]
    assert await credits(client, carol, 3) == 3
    opted_out = await submit(client, REENCODED, carol, reuse=False)  # the same content: its cache
    assert (await finished(client, opted_out.json()["job_id"], carol))["result"] == own["result"]

    # Another size (pixel coordinates), another owner, another photo: never reused
    for image, who in ((SMALLER, carol), (ANOTHER_APP, dave), (OTHER, carol)):
        resp = await submit(client, image, who)
        assert "x-cache" not in resp.headers
        assert (await finished(client, resp.json()["job_id"], who))["reused_from"] is None

    wide = await client.post(SUBMIT, json={"image": b64(REENCODED), "reuse_distance": 16}, headers=carol)
    assert wide.status_code == 400 and wide.json()["code"] == "validation_error", wide.text


async def test_a_reencoded_photo_reuses_the_earlier_contour_job(make_settings, data_dir: Path) -> None:
    async with serve(make_settings(initial_credits=5, rate_limits_enabled=False)) as client:
        await check_reuse(client)
        owners = "SELECT DISTINCT owner FROM contour_job_hashes ORDER BY owner"
        assert hashed(data_dir, owners) == [("user:1",), ("user:2",)]
        carol = await relogin(client, "carol")
        assert (await client.delete("/api/v1/auth/me", headers=carol)).status_code == 204
        assert hashed(data_dir, owners) == [("user:2",)]  # her photos' hashes went with her


def hashed(data_dir: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(data_dir / "service.db")) as db:
        return list(db.execute(sql))


async def relogin(client: httpx.AsyncClient, username: str) -> dict[str, str]:
    user = {"username": username, "password": PASSWORD}
    token = (await client.post("/api/v1/auth/login", json=user)).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


async def test_reuse_off_computes_every_job(make_settings) -> None:
    async with serve(make_settings(perceptual_reuse_distance=0)) as client:
        first = await finished(client, (await submit(client, ORIGINAL, {})).json()["job_id"], {})
        second = await submit(client, REENCODED, {})
        assert "x-cache" not in second.headers
        done = await finished(client, second.json()["job_id"], {})
        assert done["status"] == "completed" and done["reused_from"] is None
        assert first["reused_from"] is None


async def test_jobs_past_retention_take_their_hashes_with_them(make_settings, data_dir: Path) -> None:
    """The file queue's retention runs at start: the expired job's hash goes too, so a later
    near-duplicate is computed, not pointed at a result that no longer exists."""
    async with serve(make_settings(initial_credits=5, rate_limits_enabled=False)) as client:
        carol = await login(client, "carol")
        first = await submit(client, ORIGINAL, carol)
        assert (await finished(client, first.json()["job_id"], carol))["status"] == "completed"
    assert len(hashed(data_dir, "SELECT job_id FROM contour_job_hashes")) == 1
    await anyio.sleep(0.05)  # the record is now older than a retention of 0.01 s
    settings = make_settings(initial_credits=5, rate_limits_enabled=False, job_retention_seconds=0.01)
    async with serve(settings) as client:
        assert hashed(data_dir, "SELECT job_id FROM contour_job_hashes") == []
        carol = await relogin(client, "carol")
        again = await submit(client, REENCODED, carol)
        assert "x-cache" not in again.headers
        assert (await finished(client, again.json()["job_id"], carol))["reused_from"] is None
