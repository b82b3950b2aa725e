"""HEIC analysis decodes what the file holds: the embedded thumbnail when it is large enough.

A face found through a HEIC's 1024 px thumbnail is reported in the image's own pixels, where the
same picture as a JPEG (decoded reduced by draft) and as a HEIC without thumbnail put it.
"""

from __future__ import annotations

import io
from functools import cache

import httpx
from PIL import Image
from skimage import data

from app.analyzers.imaging import load_rgb_reduced
from app.core.formats import enable_heif


@cache
def picture() -> Image.Image:
    return Image.fromarray(data.astronaut()).resize((1280, 960))


@cache
def encoded(fmt: str, thumbnails: tuple[int, ...] = ()) -> bytes:
    enable_heif()
    buf = io.BytesIO()
    # x265's ultrafast preset: 5x faster to encode here, the same kind of file
    options = {"thumbnails": list(thumbnails), "enc_params": {"preset": "ultrafast"}} if fmt == "HEIF" else {}
    picture().save(buf, fmt, quality=85, **options)
    return buf.getvalue()


def test_a_heic_thumbnail_is_decoded_instead_when_large_enough() -> None:
    with_thumbnail = encoded("HEIF", thumbnails=(1024,))
    image, scale = load_rgb_reduced(with_thumbnail, 960)
    assert (image.size, scale) == ((1024, 768), 1.25)
    image, scale = load_rgb_reduced(with_thumbnail, 1100)  # the thumbnail is too small: the image
    assert (image.size, scale) == ((1280, 960), 1.0)
    image, scale = load_rgb_reduced(encoded("HEIF", thumbnails=(320,)), 960)
    assert (image.size, scale) == ((1280, 960), 1.0)


async def test_face_boxes_agree_across_formats(client: httpx.AsyncClient) -> None:
    boxes = {}
    for name, body, mime in (
        ("jpeg", encoded("JPEG"), "image/jpeg"),
        ("heic-thumbnail", encoded("HEIF", thumbnails=(1024,)), "image/heic"),
        ("heic-full", encoded("HEIF", thumbnails=()), "image/heic"),
    ):
        up = await client.post("/api/v1/upload", files={"file": (f"a.{name}", body, mime)})
        assert up.status_code == 201, up.text
        resp = await client.post(
            "/api/v1/analyze", json={"image_id": up.json()["image_id"], "analyzer": "face"}
        )
        assert resp.status_code == 200, resp.text
        boxes[name] = resp.json()["face_box"]
    for name in ("heic-thumbnail", "heic-full"):
        for key in ("x", "y", "width", "height"):
            assert abs(boxes[name][key] - boxes["jpeg"][key]) <= 24, (name, boxes)
