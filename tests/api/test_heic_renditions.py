"""A HEIC is decoded once: its full-size JPEG rendition (made after the upload answers, or by
the first analysis) is what analyses and previews decode, cached and deleted with the image.

HEVC has no reduced decoding, so without the rendition every analysis of a 12 MP HEIC decodes
all of it again (bench/phone.py measures both). The rendition is at full size and upright, so
results are in the stored image's pixels, as the same picture sent as a JPEG gives them.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from skimage import data

from app.core.config import Settings
from app.core.formats import enable_heif
from tests.conftest import files_under, serve

RENDITION = "rendition-q90-v1.jpg"


@cache
def picture() -> Image.Image:
    return Image.fromarray(data.astronaut()).resize((1280, 960))


@cache
def heic(size: tuple[int, int] = (1280, 960), orientation: int = 1) -> bytes:
    """The astronaut at `size` as a HEIC of 256 px grid tiles, as phones write (512 there);
    an EXIF orientation pillow-heif writes as the HEIF's rotation (the decoder applies it)."""
    enable_heif()
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = orientation
    options = {"thumbnails": [], "tile_size": 256, "enc_params": {"preset": "ultrafast"}}
    picture().resize(size).save(buf, "HEIF", quality=85, exif=exif.tobytes(), **options)
    return buf.getvalue()


def jpeg() -> bytes:
    buf = io.BytesIO()
    picture().save(buf, "JPEG", quality=90)
    return buf.getvalue()


async def upload(c: httpx.AsyncClient, body: bytes, mime: str = "image/heic") -> str:
    resp = await c.post("/api/v1/upload", files={"file": ("photo", body, mime)})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["image_id"])


async def analyze(c: httpx.AsyncClient, image_id: str, analyzer: str) -> dict:
    resp = await c.post("/api/v1/analyze", json={"image_id": image_id, "analyzer": analyzer})
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def made(path: Path, within: float = 120.0) -> bool:
    """Whether `path` appears (it is published whole, by rename) before `within` seconds pass:
    a generous bound, the wait ends as soon as it is there."""
    deadline = time.monotonic() + within
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_a_heic_upload_makes_its_full_size_rendition_in_the_background(
    client: httpx.AsyncClient, data_dir: Path
) -> None:
    image_id = await upload(client, heic())
    rendition = data_dir / "analysis" / image_id / RENDITION
    assert await made(rendition)
    with Image.open(rendition) as im:
        assert (im.format, im.size, im.mode) == ("JPEG", (1280, 960), "RGB")
        pixels = np.asarray(im, dtype=np.float32)
    with Image.open(io.BytesIO(heic())) as original:
        decoded = np.asarray(original.convert("RGB"), dtype=np.float32)
    assert np.abs(pixels - decoded).mean() < 2.0  # the HEIC's own pixels, re-encoded at q90
    # a JPEG has reduced decoding: no rendition
    jpeg_id = await upload(client, jpeg(), "image/jpeg")
    await analyze(client, jpeg_id, "face")
    assert not [
        name for name in files_under(data_dir / "analysis") if jpeg_id in name and "rendition" in name
    ]


async def test_face_and_classify_on_a_heic_match_the_same_picture_as_jpeg(
    make_settings: Callable[..., Settings], data_dir: Path
) -> None:
    async with serve(make_settings(rendition_at_upload=False, perceptual_reuse_distance=0)) as c:
        heic_id, jpeg_id = await upload(c, heic()), await upload(c, jpeg(), "image/jpeg")
        rendition = data_dir / "analysis" / heic_id / RENDITION
        await asyncio.sleep(0.2)
        assert not rendition.exists()  # not at upload: the first analysis makes it
        faces = {name: await analyze(c, i, "face") for name, i in (("heic", heic_id), ("jpeg", jpeg_id))}
        assert rendition.exists()
        for key in ("x", "y", "width", "height"):
            assert abs(faces["heic"]["face_box"][key] - faces["jpeg"]["face_box"][key]) <= 8, faces
        labels = [(await analyze(c, i, "classify"))["predictions"][0]["label"] for i in (heic_id, jpeg_id)]
        assert labels[0] == labels[1]
        # the mock skin analysis reads no pixels, and a HEIC uploaded now still gets analyzed
        assert (await analyze(c, await upload(c, heic()), "skin"))["skin_type"]


async def test_a_rotated_heic_is_analyzed_and_previewed_upright(
    client: httpx.AsyncClient, data_dir: Path
) -> None:
    image_id = await upload(client, heic((640, 480), orientation=6))
    meta = (await client.get(f"/api/v1/images/{image_id}")).json()
    upright = (meta["upright_width"], meta["upright_height"])
    assert upright == (480, 640)
    assert await made(data_dir / "analysis" / image_id / RENDITION)
    with Image.open(data_dir / "analysis" / image_id / RENDITION) as im:
        assert im.size == upright
    preview = await client.get(f"/api/v1/images/{image_id}/preview?width=128")
    assert preview.status_code == 200
    assert Image.open(io.BytesIO(preview.content)).size == (128, 171)


async def test_deleting_a_heic_deletes_its_rendition(client: httpx.AsyncClient, data_dir: Path) -> None:
    image_id = await upload(client, heic())
    assert await made(data_dir / "analysis" / image_id / RENDITION)
    await analyze(client, image_id, "face")
    assert (await client.delete(f"/api/v1/images/{image_id}")).status_code == 204
    assert [name for name in files_under(data_dir) if image_id in name] == []


async def test_a_damaged_rendition_is_made_again(client: httpx.AsyncClient, data_dir: Path) -> None:
    image_id = await upload(client, heic())
    rendition = data_dir / "analysis" / image_id / RENDITION
    assert await made(rendition)
    whole = rendition.read_bytes()
    rendition.write_bytes(whole[: len(whole) // 2])  # e.g. a disk that lost its end
    assert "face_box" in await analyze(client, image_id, "face")
    assert rendition.read_bytes()[-2:] == b"\xff\xd9"
    assert abs(len(rendition.read_bytes()) - len(whole)) < len(whole) // 100


async def test_without_rendition_formats_a_heic_is_decoded_by_each_analysis(
    make_settings: Callable[..., Settings], data_dir: Path
) -> None:
    async with serve(make_settings(rendition_formats="")) as c:
        image_id = await upload(c, heic())
        assert "face_box" in await analyze(c, image_id, "face")
        assert (await c.get(f"/api/v1/images/{image_id}/preview?width=64")).status_code == 200
    assert not [name for name in files_under(data_dir / "analysis") if "rendition" in name]


async def test_an_avif_has_a_rendition_too(client: httpx.AsyncClient, data_dir: Path) -> None:
    buf = io.BytesIO()
    picture().resize((640, 480)).save(buf, "AVIF", quality=80)
    image_id = await upload(client, buf.getvalue(), "image/avif")
    assert await made(data_dir / "analysis" / image_id / RENDITION)
    jpeg_id = await upload(client, jpeg(), "image/jpeg")
    labels = [(await analyze(client, i, "classify"))["predictions"][0]["label"] for i in (image_id, jpeg_id)]
    assert labels[0] == labels[1]


async def test_a_heic_near_duplicate_reuses_a_result_hashed_from_the_rendition(
    make_settings: Callable[..., Settings], data_dir: Path
) -> None:
    async with serve(make_settings(rendition_at_upload=False)) as c:
        first, second = await upload(c, heic()), await upload(c, heic())
        assert "reused_from" not in await analyze(c, first, "face")
        reused = await analyze(c, second, "face")
        assert reused["reused_from"]["image_id"] == first
        # the second image's hash was taken from its rendition, made for it (one decode, kept)
        assert (data_dir / "analysis" / second / RENDITION).exists()
