"""Every photo a phone makes, through HTTP: declared trailers cut off, upright sizes, AVIF, 48 MP.

Files are built to the published layouts from a real photo (tests/phone_photos.py). A photo
whose trailer its own metadata declares is stored without it: the stored bytes, the content
route and the metadata's sha256 and size are the image's; the metadata says what was removed.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests import phone_photos as phone
from tests.conftest import files_under, serve

UPLOAD = "/api/v1/upload"


def images_in(data_dir: Path) -> list[str]:
    return files_under(data_dir / "images") if (data_dir / "images").exists() else []


def cases() -> list[object]:
    video, gain = phone.mp4(), phone.gain_map()
    motion = phone.motion_photo(video)
    uhdr = phone.motion_photo(video, gain_map=gain)
    mvimg = phone.mvimg(video)
    samsung = phone.samsung_motion_photo(video)
    edited = phone.samsung_edited(7_000)
    return [
        pytest.param(
            motion, motion[: -len(video)], "motion_photo", ["MotionPhoto:video/mp4"], id="motion-photo"
        ),
        pytest.param(
            uhdr, uhdr[: -len(video)], "motion_photo", ["MotionPhoto:video/mp4"], id="ultra-hdr-motion"
        ),
        pytest.param(mvimg, mvimg[: -len(video)], "micro_video", ["MicroVideo:video/mp4"], id="mvimg"),
        pytest.param(
            samsung, phone.photo(), "samsung_sef", ["Image_UTC_Data", "MotionPhoto_Data"], id="samsung-motion"
        ),
        pytest.param(
            edited,
            phone.photo(),
            "samsung_sef",
            ["Image_UTC_Data", "Photo_Editor_Re_Edit_Data"],
            id="galaxy-edited",
        ),
    ]


@pytest.mark.parametrize("copy_bytes", [256 * 1024, 0], ids=["checked-in-memory", "checked-mapped"])
@pytest.mark.parametrize(("body", "image", "kind", "contents"), cases())
async def test_declared_trailer_is_not_stored(
    make_settings, data_dir: Path, body: bytes, image: bytes, kind: str, contents: list[str], copy_bytes: int
) -> None:
    """A small photo is checked from its copy in memory; with UPLOAD_MEMORY_COPY_BYTES=0 (as a
    larger one) through a mapping of its temp file: the same outcome either way."""
    assert len(body) - len(image) > 4096  # refused as undecodable_image before
    assert len(body) <= 256 * 1024
    async with serve(make_settings(upload_memory_copy_bytes=copy_bytes)) as client:
        await check_trailer_cut(client, data_dir, body, image, kind, contents)


async def check_trailer_cut(
    client: httpx.AsyncClient, data_dir: Path, body: bytes, image: bytes, kind: str, contents: list[str]
) -> None:
    resp = await client.post(UPLOAD, files={"file": ("PXL_20261206.MP.jpg", body, "image/jpeg")})
    assert resp.status_code == 201, resp.text
    meta = resp.json()
    assert meta["trailer"] == {"kind": kind, "removed_bytes": len(body) - len(image), "contents": contents}
    assert (meta["size_bytes"], meta["sha256"]) == (len(image), hashlib.sha256(image).hexdigest())
    image_id = meta["image_id"]
    assert (data_dir / "images" / f"{image_id}.jpg").read_bytes() == image
    assert images_in(data_dir) == [f"{image_id}.jpg"]  # no temp file, no video beside it
    content = await client.get(f"/api/v1/images/{image_id}/content")
    assert content.content == image
    assert content.headers["etag"].strip('"') == meta["sha256"]
    listed = (await client.get("/api/v1/images")).json()["items"]  # read back from the catalog
    assert [item["trailer"] for item in listed] == [meta["trailer"]]
    assert (await client.post("/analyze", json={"image_id": image_id})).status_code == 200
    classify = await client.post("/api/v1/analyze", json={"image_id": image_id, "analyzer": "classify"})
    assert classify.status_code == 200, classify.text


async def test_motion_photo_metadata_survives_a_restart(make_settings, data_dir: Path) -> None:
    from tests.conftest import serve

    body = phone.motion_photo()
    async with serve(make_settings()) as c:
        meta = (await c.post(UPLOAD, files={"file": ("m.jpg", body, "image/jpeg")})).json()
    async with serve(make_settings()) as c:
        again = (await c.get(f"/api/v1/images/{meta['image_id']}")).json()
    assert again == meta


async def test_idempotent_retry_of_a_motion_photo_is_a_replay(
    client: httpx.AsyncClient, data_dir: Path
) -> None:
    # The key's fingerprint is the upload as sent, not the image that remains once cut.
    body = phone.motion_photo()
    headers = {"Idempotency-Key": "motion-1"}
    first = await client.post(UPLOAD, files={"file": ("m.jpg", body, "image/jpeg")}, headers=headers)
    second = await client.post(UPLOAD, files={"file": ("m.jpg", body, "image/jpeg")}, headers=headers)
    assert (first.status_code, second.status_code) == (201, 201), second.text
    assert second.headers.get("idempotent-replayed") == "true"
    assert second.json()["image_id"] == first.json()["image_id"]
    other = await client.post(UPLOAD, files={"file": ("m.jpg", phone.mvimg(), "image/jpeg")}, headers=headers)
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    assert len(images_in(data_dir)) == 1


async def test_a_large_motion_photo_is_cut_right(client: httpx.AsyncClient, data_dir: Path) -> None:
    # A primary image of ~0.8 MB (past three hash checkpoints, every 256 KiB) and a 2 MB video.
    video = phone.mp4(2_000_000)
    body = phone.motion_photo(video, size=(4000, 3000))
    image = body[: -len(video)]
    assert len(image) > 3 * 256 * 1024 and len(body) <= 5 * 1024 * 1024
    meta = (await client.post(UPLOAD, files={"file": ("m.jpg", body, "image/jpeg")})).json()
    assert meta["sha256"] == hashlib.sha256(image).hexdigest()
    assert (data_dir / "images" / f"{meta['image_id']}.jpg").read_bytes() == image


UNDECLARED = {
    "zeros": phone.photo() + b"\0" * 5000,
    "video-without-xmp": phone.photo() + phone.mp4(),
    "declared-too-short": phone.motion_photo(declared=1000),
    "declared-past-the-start": phone.motion_photo(declared=10_000_000),
    "sef-directory-pointing-nowhere": phone.photo()
    + b"\0" * 5000
    + b"SEFH"
    + (106).to_bytes(4, "little")
    + (1).to_bytes(4, "little")
    + bytes(4)
    + (90_000).to_bytes(4, "little")
    + (100).to_bytes(4, "little")
    + (24).to_bytes(4, "little")
    + b"SEFT",
}


@pytest.mark.parametrize("body", UNDECLARED.values(), ids=UNDECLARED.keys())
async def test_undeclared_trailer_over_the_limit_is_trailing_data(
    client: httpx.AsyncClient, data_dir: Path, body: bytes
) -> None:
    resp = await client.post(UPLOAD, files={"file": ("x.jpg", body, "image/jpeg")})
    assert resp.status_code == 400, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["code"] == "trailing_data"
    assert "after its end-of-image marker" in resp.json()["detail"]
    assert images_in(data_dir) == []


async def test_trailer_limit_is_a_setting(make_settings, data_dir: Path) -> None:
    from tests.conftest import serve

    async with serve(make_settings(jpeg_max_trailing_bytes=6000)) as c:
        resp = await c.post(UPLOAD, files={"file": ("x.jpg", UNDECLARED["zeros"], "image/jpeg")})
    assert resp.status_code == 201
    assert resp.json()["trailer"] is None  # a small undeclared trailer is kept, as before
    assert resp.json()["size_bytes"] == len(UNDECLARED["zeros"])


async def test_mpf_images_are_kept_where_the_index_puts_them(
    client: httpx.AsyncClient, data_dir: Path
) -> None:
    body = phone.mpo(gap=64)  # padding before the second image, the MPF index pointing past it
    second = Image.open(io.BytesIO(body))
    second.seek(1)
    second.load()  # Pillow finds the second image through the same index
    resp = await client.post(UPLOAD, files={"file": ("stereo.jpg", body, "image/jpeg")})
    assert resp.status_code == 201, resp.text
    assert resp.json()["trailer"] is None
    assert (data_dir / "images" / f"{resp.json()['image_id']}.jpg").read_bytes() == body


@pytest.mark.parametrize(
    ("orientation", "upright"), [(1, (320, 240)), (3, (320, 240)), (6, (240, 320)), (8, (240, 320))]
)
async def test_upright_size(client: httpx.AsyncClient, orientation: int, upright: tuple[int, int]) -> None:
    resp = await client.post(UPLOAD, files={"file": ("r.jpg", phone.rotated(orientation), "image/jpeg")})
    meta = resp.json()
    assert (meta["width"], meta["height"]) == (320, 240)  # as stored
    assert (meta["upright_width"], meta["upright_height"]) == upright


async def test_a_48_megapixel_photo_is_accepted(client: httpx.AsyncClient) -> None:
    big = Image.linear_gradient("L").resize((8000, 6000)).convert("RGB")
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=80)
    resp = await client.post(UPLOAD, files={"file": ("48mp.jpg", buf.getvalue(), "image/jpeg")})
    assert resp.status_code == 201, resp.text
    assert (resp.json()["width"], resp.json()["height"]) == (8000, 6000)
    classify = await client.post(
        "/api/v1/analyze", json={"image_id": resp.json()["image_id"], "analyzer": "classify"}
    )
    assert classify.status_code == 200


async def test_over_the_pixel_limit_is_refused(client: httpx.AsyncClient, data_dir: Path) -> None:
    buf = io.BytesIO()
    Image.new("L", (8193, 6144)).save(buf, "JPEG")  # one column more than 8192 x 6144
    resp = await client.post(UPLOAD, files={"file": ("big.jpg", buf.getvalue(), "image/jpeg")})
    assert resp.status_code == 400 and resp.json()["code"] == "image_too_large"
    assert images_in(data_dir) == []


async def test_a_declared_trailer_may_come_on_top_of_the_upload_limit(make_settings, data_dir: Path) -> None:
    """MAX_UPLOAD_BYTES bounds the image stored; a declared video may add up to
    MAX_DECLARED_TRAILER_BYTES to the upload. A file over the limit without one stays 413."""
    from tests.conftest import serve

    image = phone.motion_photo(video=b"")  # the image part alone, to size the limit
    body = phone.motion_photo(video=phone.mp4(200_000))
    limit = len(image) + 1000
    assert len(body) > limit
    settings = make_settings(max_upload_bytes=limit, max_declared_trailer_bytes=300_000)
    async with serve(settings) as c:
        ok = await c.post(UPLOAD, files={"file": ("motion.jpg", body, "image/jpeg")})
        assert ok.status_code == 201, ok.text
        assert ok.json()["size_bytes"] <= limit and ok.json()["trailer"]["kind"] == "motion_photo"

        plain = phone.photo(size=(640, 480)) + b"\0" * (limit - 1000)  # over the limit, nothing declared
        too_big = await c.post(UPLOAD, files={"file": ("big.jpg", plain, "image/jpeg")})
        assert too_big.status_code == 413, too_big.text
        assert too_big.json()["code"] == "payload_too_large"
    async with serve(make_settings(max_upload_bytes=limit, max_declared_trailer_bytes=0)) as c:
        refused = await c.post(UPLOAD, files={"file": ("motion.jpg", body, "image/jpeg")})
        assert refused.status_code == 413
    assert len(images_in(data_dir)) == 1  # the refused files left nothing
