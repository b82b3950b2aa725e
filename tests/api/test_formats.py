"""WebP, HEIC/HEIF and AVIF uploads: accepted, stored as uploaded, served with their type."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
from PIL import Image
from skimage import data

from app.core.formats import enable_heif
from tests.conftest import files_under
from tests.factories import encode


def photo(fmt: str) -> bytes:
    enable_heif()
    return encode(Image.fromarray(data.astronaut()).resize((256, 256)), fmt, quality=80)


CASES = [
    pytest.param("WEBP", "image/webp", "webp", id="webp"),
    pytest.param("HEIF", "image/heic", "heic", id="heic"),
    pytest.param("AVIF", "image/avif", "avif", id="avif"),
]


@pytest.mark.parametrize(("fmt", "mime", "ext"), CASES)
async def test_round_trip(client: httpx.AsyncClient, data_dir: Path, fmt: str, mime: str, ext: str) -> None:
    body = photo(fmt)
    for declared in (mime, "application/octet-stream"):
        resp = await client.post("/api/v1/upload", files={"file": (f"p.{ext}", body, declared)})
        assert resp.status_code == 201, resp.text
        meta = resp.json()
        assert (meta["content_type"], meta["format"]) == (mime, ext)
        assert (meta["width"], meta["height"]) == (256, 256)
        assert (data_dir / "images" / f"{meta['image_id']}.{ext}").read_bytes() == body
        content = await client.get(f"/api/v1/images/{meta['image_id']}/content")
        assert content.headers["content-type"] == mime
        assert hashlib.sha256(content.content).hexdigest() == meta["sha256"]
        assert (await client.post("/analyze", json={"image_id": meta["image_id"]})).status_code == 200


@pytest.mark.parametrize(("fmt", "mime", "ext"), CASES)
async def test_truncated_is_400_and_leaves_nothing(
    client: httpx.AsyncClient, data_dir: Path, fmt: str, mime: str, ext: str
) -> None:
    body = photo(fmt)
    before = files_under(data_dir)
    resp = await client.post("/api/v1/upload", files={"file": (f"p.{ext}", body[: len(body) * 2 // 3], mime)})
    assert resp.status_code == 400
    assert resp.json()["code"] == "undecodable_image"
    assert files_under(data_dir) == before


async def test_formats_can_be_turned_off(make_settings) -> None:
    from tests.conftest import serve

    async with serve(make_settings(allowed_formats=["jpeg", "png"])) as c:
        resp = await c.post("/api/v1/upload", files={"file": ("p.webp", photo("WEBP"), "image/webp")})
    assert resp.status_code == 400
    assert resp.json()["code"] == "unsupported_media_type"


def test_avif_is_told_from_heic_by_its_brands() -> None:
    from app.core.formats import SNIFF_BYTES, sniff_format

    avif, heic = photo("AVIF"), photo("HEIF")
    assert sniff_format(avif[:SNIFF_BYTES]).name == "avif"  # type: ignore[union-attr]
    assert sniff_format(heic[:SNIFF_BYTES]).name == "heic"  # type: ignore[union-attr]
    # A generic major brand (mif1) names the codec among the compatible brands.
    generic = avif[:8] + b"mif1" + avif[12:]
    assert b"avif" in generic[16:SNIFF_BYTES]
    assert sniff_format(generic[:SNIFF_BYTES]).name == "avif"  # type: ignore[union-attr]
