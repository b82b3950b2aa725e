"""`GET /api/v1/images/{id}/preview`: a resized, upright JPEG of the content, cached with the
image's analyses (same folder, deleted with it), a bounded width, problems for bad input."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import httpx
from PIL import Image

from app.core.config import Settings
from tests.conftest import files_under, serve
from tests.factories import encode, jpeg_bytes, photo_jpeg
from tests.logins import PASSWORD


async def upload(c: httpx.AsyncClient, body: bytes, headers: dict[str, str] | None = None) -> str:
    resp = await c.post("/api/v1/upload", files={"file": ("p.jpg", body, "image/jpeg")}, headers=headers)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["image_id"])


def decoded(body: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(body))
    assert image.format == "JPEG"
    return image


def rotated_jpeg() -> bytes:
    """A 400 x 200 JPEG (left half red) stored sideways: EXIF orientation 6, upright 200 x 400."""
    image = Image.new("RGB", (400, 200), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 200, 200))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(image, "JPEG", quality=95, exif=exif.tobytes())


async def test_a_preview_is_rendered_once_then_served_from_the_cache(
    client: httpx.AsyncClient, data_dir: Path
) -> None:
    image_id = await upload(client, photo_jpeg())  # 512 x 512
    first = await client.get(f"/api/v1/images/{image_id}/preview", params={"width": 128})
    assert first.status_code == 200
    assert first.headers["content-type"] == "image/jpeg"
    assert first.headers["x-cache"] == "MISS"
    assert decoded(first.content).size == (128, 128)
    stored = [name for name in files_under(data_dir / "analysis") if "preview" in name]
    assert stored == [f"{image_id}/preview-w128-q80-v1.jpg"]
    assert (data_dir / "analysis" / stored[0]).read_bytes() == first.content
    again = await client.get(f"/api/v1/images/{image_id}/preview?width=128")
    assert again.headers["x-cache"] == "HIT"
    assert again.content == first.content
    assert again.headers["etag"] == first.headers["etag"]
    not_modified = await client.get(
        f"/api/v1/images/{image_id}/preview?width=128", headers={"If-None-Match": first.headers["etag"]}
    )
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert first.headers["cache-control"] == "private, no-cache"
    assert "sandbox" in first.headers["content-security-policy"]


async def test_a_preview_is_upright_and_never_enlarged(client: httpx.AsyncClient) -> None:
    image_id = await upload(client, rotated_jpeg())
    small = decoded((await client.get(f"/api/v1/images/{image_id}/preview?width=128")).content)
    assert small.size == (128, 256)  # upright: portrait
    top, bottom = small.getpixel((64, 20)), small.getpixel((64, 236))
    assert top[0] > 200 and top[2] < 60  # orientation 6 (turn clockwise): the stored left half on top
    assert bottom[2] > 200 and bottom[0] < 60
    large = decoded((await client.get(f"/api/v1/images/{image_id}/preview?width=1024")).content)
    assert large.size == (200, 400)  # no wider than the image


async def test_deleting_the_image_deletes_its_previews(client: httpx.AsyncClient, data_dir: Path) -> None:
    image_id = await upload(client, photo_jpeg())
    for width in (64, 256):
        assert (await client.get(f"/api/v1/images/{image_id}/preview?width={width}")).status_code == 200
    assert (await client.delete(f"/api/v1/images/{image_id}")).status_code == 204
    assert not [name for name in files_under(data_dir / "analysis") if image_id in name]
    gone = await client.get(f"/api/v1/images/{image_id}/preview?width=64")
    assert gone.status_code == 404
    assert gone.json()["code"] == "image_not_found"


async def test_bad_widths_are_400_problems_and_leave_nothing(
    client: httpx.AsyncClient, data_dir: Path
) -> None:
    image_id = await upload(client, jpeg_bytes((300, 200)))
    before = files_under(data_dir)
    for width in ("300", "0", "-1", "abc", "1e3", "100001", ""):
        resp = await client.get(f"/api/v1/images/{image_id}/preview?width={width}")
        assert resp.status_code == 400, width
        assert resp.headers["content-type"] == "application/problem+json"
        body = resp.json()
        assert body["code"] == "validation_error", width
        assert "width" in body["detail"], width
    assert (
        "must be one of 64, 128, 256, 512, 1024"
        in (await client.get(f"/api/v1/images/{image_id}/preview?width=300")).json()["detail"]
    )
    assert files_under(data_dir) == before


async def test_the_widths_are_a_setting(make_settings: Callable[..., Settings]) -> None:
    async with serve(make_settings(preview_widths="300, 40", preview_jpeg_quality=60)) as c:
        image_id = await upload(c, jpeg_bytes((600, 200)))
        assert decoded((await c.get(f"/api/v1/images/{image_id}/preview?width=300")).content).size == (
            300,
            100,
        )
        assert (await c.get(f"/api/v1/images/{image_id}/preview?width=256")).status_code == 400


async def test_unknown_and_bad_ids(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/v1/images/3fa85f64-5717-4562-b3fc-2c963f66afa6/preview?width=64")
    assert missing.status_code == 404
    assert missing.json()["code"] == "image_not_found"
    bad = await client.get("/api/v1/images/not-a-uuid/preview?width=64")
    assert bad.status_code == 400
    assert bad.json()["code"] == "validation_error"


async def test_another_users_image_has_no_preview(client: httpx.AsyncClient) -> None:
    tokens = {}
    for name in ("preview-owner", "preview-other"):
        body = {"username": name, "password": PASSWORD}
        assert (await client.post("/api/v1/auth/register", json=body)).status_code == 201
        login = await client.post("/api/v1/auth/login", json=body)
        tokens[name] = {"Authorization": f"Bearer {login.json()['access_token']}"}
    image_id = await upload(client, photo_jpeg(), tokens["preview-owner"])
    url = f"/api/v1/images/{image_id}/preview?width=64"
    assert (await client.get(url, headers=tokens["preview-owner"])).status_code == 200
    for headers in (tokens["preview-other"], {}):  # another user; anonymous
        resp = await client.get(url, headers=headers)
        assert resp.status_code == 404
        assert resp.json()["code"] == "image_not_found"
