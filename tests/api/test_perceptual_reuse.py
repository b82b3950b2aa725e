"""Perceptual reuse (issue 18): a near-duplicate's result answers, said so, scoped to the owner."""

from __future__ import annotations

import json

import httpx
import pytest
from PIL import Image
from skimage import data

from app.services.images.perceptual import distance
from tests.conftest import serve
from tests.factories import encode

KEYS = ["key-one-0123456789abcdef", "key-two-0123456789abcdef"]


def jpeg(pixels: Image.Image, quality: int) -> bytes:
    return encode(pixels, "JPEG", quality=quality)


ASTRONAUT = Image.fromarray(data.astronaut())
ORIGINAL = jpeg(ASTRONAUT, 95)
REENCODED = jpeg(ASTRONAUT, 60)  # same pixels size, other bytes
HALF = jpeg(ASTRONAUT.resize((256, 256), Image.Resampling.LANCZOS), 85)
LARGER = jpeg(ASTRONAUT.resize((640, 640), Image.Resampling.LANCZOS), 90)
OTHER = jpeg(Image.fromarray(data.chelsea()), 95)


async def upload(client: httpx.AsyncClient, body: bytes, key: str | None = None) -> dict:
    headers = {"X-API-KEY": key} if key else {}
    resp = await client.post("/api/v1/upload", files={"file": ("p.jpg", body, "image/jpeg")}, headers=headers)
    assert resp.status_code == 201, resp.text
    return resp.json()


async def analyze(
    client: httpx.AsyncClient, image_id: str, key: str | None = None, **extra
) -> httpx.Response:
    headers = {"X-API-KEY": key} if key else {}
    return await client.post("/api/v1/analyze", json={"image_id": image_id, **extra}, headers=headers)


async def test_upload_stores_a_pdq_hash_near_for_a_reencoding_far_for_another_photo(make_settings) -> None:
    async with serve(make_settings(perceptual_hash_at_upload=True)) as client:
        a, b, c = [await upload(client, body) for body in (ORIGINAL, REENCODED, OTHER)]
        listed = await client.get(f"/api/v1/images/{b['image_id']}")
    for meta in (a, b, c):
        assert len(meta["perceptual_hash"]) == 64
    if listed.status_code == 200:
        assert listed.json()["perceptual_hash"] == b["perceptual_hash"]
    assert distance(a["perceptual_hash"], b["perceptual_hash"]) <= 8
    assert distance(a["perceptual_hash"], c["perceptual_hash"]) > 64


async def test_classify_reuses_a_near_duplicate_and_says_so(make_settings) -> None:
    async with serve(make_settings()) as client:
        first = (await upload(client, ORIGINAL))["image_id"]
        computed = await analyze(client, first, analyzer="classify")
        assert computed.status_code == 200 and computed.headers["x-cache"] == "MISS"
        second = (await upload(client, HALF))["image_id"]  # another size: classify may reuse any
        reused = await analyze(client, second, analyzer="classify")
        assert reused.status_code == 200, reused.text
        assert reused.headers["x-cache"] == "REUSED"
        body = reused.json()
        assert body["image_id"] == second
        assert body["reused_from"]["image_id"] == first
        assert 0 <= body["reused_from"]["distance"] <= 16
        mine = {k: v for k, v in computed.json().items() if k != "image_id"}
        assert {k: v for k, v in body.items() if k not in ("image_id", "reused_from")} == mine
        # the opt-out computes the image's own result; from then on that one answers
        fresh = await analyze(client, second, analyzer="classify", reuse=False)
        assert fresh.headers["x-cache"] == "MISS" and "reused_from" not in fresh.json()
        again = await analyze(client, second, analyzer="classify")
        assert again.headers["x-cache"] == "HIT" and again.content == fresh.content


async def test_no_reuse_for_another_photo_another_owner_or_the_mock(make_settings) -> None:
    async with serve(make_settings(api_keys=KEYS)) as client:
        first = (await upload(client, ORIGINAL, KEYS[0]))["image_id"]
        assert (await analyze(client, first, KEYS[0], analyzer="classify")).status_code == 200
        assert (await analyze(client, first, KEYS[0])).status_code == 200  # skin
        other_photo = (await upload(client, OTHER, KEYS[0]))["image_id"]
        resp = await analyze(client, other_photo, KEYS[0], analyzer="classify")
        assert resp.headers["x-cache"] == "MISS" and "reused_from" not in resp.json()
        theirs = (await upload(client, REENCODED, KEYS[1]))["image_id"]
        resp = await analyze(client, theirs, KEYS[1], analyzer="classify")
        assert resp.headers["x-cache"] == "MISS" and "reused_from" not in resp.json()
        mine = (await upload(client, REENCODED, KEYS[0]))["image_id"]
        skin = await analyze(client, mine, KEYS[0])
        assert skin.headers["x-cache"] == "MISS" and "reused_from" not in skin.json()  # seeded by the id


async def test_scope_any_widens_to_other_owners(make_settings) -> None:
    async with serve(make_settings(api_keys=KEYS, perceptual_reuse_scope="any")) as client:
        first = (await upload(client, ORIGINAL, KEYS[0]))["image_id"]
        assert (await analyze(client, first, KEYS[0], analyzer="classify")).status_code == 200
        theirs = (await upload(client, REENCODED, KEYS[1]))["image_id"]
        resp = await analyze(client, theirs, KEYS[1], analyzer="classify")
        assert resp.headers["x-cache"] == "REUSED" and resp.json()["reused_from"]["image_id"] == first


async def test_deleting_the_source_ends_the_reuse(make_settings) -> None:
    async with serve(make_settings()) as client:
        first = (await upload(client, ORIGINAL))["image_id"]
        await analyze(client, first, analyzer="classify")
        second = (await upload(client, REENCODED))["image_id"]
        assert (await analyze(client, second, analyzer="classify")).headers["x-cache"] == "REUSED"
        assert (await client.delete(f"/api/v1/images/{first}")).status_code in (200, 204)
        resp = await analyze(client, second, analyzer="classify")
        assert resp.headers["x-cache"] == "MISS" and "reused_from" not in resp.json()


async def test_distance_zero_turns_it_off_and_hashes_nothing(make_settings) -> None:
    async with serve(make_settings(perceptual_reuse_distance=0)) as client:
        first = await upload(client, ORIGINAL)
        assert first["perceptual_hash"] is None
        await analyze(client, first["image_id"], analyzer="classify")
        second = (await upload(client, REENCODED))["image_id"]
        resp = await analyze(client, second, analyzer="classify")
        assert resp.headers["x-cache"] == "MISS"


async def test_hash_computed_at_first_analysis_by_default(make_settings) -> None:
    async with serve(make_settings()) as client:  # PERCEPTUAL_HASH_AT_UPLOAD is false by default
        first = await upload(client, ORIGINAL)
        assert first["perceptual_hash"] is None
        await analyze(client, first["image_id"], analyzer="classify")
        second = (await upload(client, REENCODED))["image_id"]
        resp = await analyze(client, second, analyzer="classify")
        assert resp.headers["x-cache"] == "REUSED", resp.text


@pytest.mark.parametrize("value", [-1, 32, 17, "x"])
async def test_reuse_distance_out_of_range_is_a_400(make_settings, value: object) -> None:
    async with serve(make_settings()) as client:
        image_id = (await upload(client, ORIGINAL))["image_id"]
        resp = await analyze(client, image_id, analyzer="classify", reuse_distance=value)
    assert resp.status_code == 400
    problem = resp.json()
    assert problem["code"] == "validation_error" and "reuse_distance" in problem["detail"]


async def test_face_reuses_only_the_same_pixel_size(make_settings) -> None:
    async with serve(make_settings()) as client:
        first = (await upload(client, ORIGINAL))["image_id"]
        computed = await analyze(client, first, analyzer="face")
        assert computed.status_code == 200, computed.text
        larger = (await upload(client, LARGER))["image_id"]
        resp = await analyze(client, larger, analyzer="face")
        assert resp.status_code == 200, resp.text
        assert "reused_from" not in json.loads(resp.content) and resp.headers["x-cache"] == "MISS"
        same = (await upload(client, REENCODED))["image_id"]
        resp = await analyze(client, same, analyzer="face")
        assert resp.headers["x-cache"] == "REUSED" and resp.json()["reused_from"]["image_id"] == first
