"""Integrity of uploads through HTTP: corrupt or hostile PNG, JPEG and WebP files are refused.

Each hostile file (built chunk by chunk in tests/services/validation/samples.py) must get a 400
problem+json with its code and leave nothing in `data/images`; ordinary files from Pillow
and scikit-image (text chunks, APNG, 16-bit, palette + tRNS, MPO, animated WebP) still pass.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

import httpx
import pytest

from tests.conftest import files_under
from tests.factories import photo_jpeg
from tests.services.validation.samples import (
    EXIF,
    jpeg,
    jpeg_hostile,
    mpo,
    png_hostile,
    png_ok,
    webp_hostile,
    webp_ok,
)

UPLOAD = "/upload"
PROBLEM = "application/problem+json"
MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}

HOSTILE = [
    *(pytest.param("png", body, id=f"png-{name}") for name, body in png_hostile().items()),
    *(pytest.param("jpeg", body, id=f"jpeg-{name}") for name, body in jpeg_hostile().items()),
    *(pytest.param("webp", body, id=f"webp-{name}") for name, body in webp_hostile().items()),
]

# Undeclared bytes after a JPEG's end beyond the limit: their own code.
TRAILING = [jpeg_hostile()[name] for name in ("trailing-garbage", "trailing-garbage-ending-in-eoi")]


def images_in(data_dir: Path) -> list[str]:
    return files_under(data_dir / "images") if (data_dir / "images").exists() else []


async def upload(client: httpx.AsyncClient, fmt: str, body: bytes) -> httpx.Response:
    return await client.post(UPLOAD, files={"file": (f"upload.{fmt}", body, MIME[fmt])})


@pytest.mark.parametrize(("fmt", "body"), HOSTILE)
async def test_hostile_file_is_refused_and_leaves_nothing(
    client: httpx.AsyncClient, data_dir: Path, fmt: str, body: bytes
) -> None:
    assert len(body) <= 5 * 1024 * 1024  # refused for its contents, not its size
    response = await upload(client, fmt, body)
    assert response.status_code == 400, response.text[:300]
    assert response.headers["content-type"].split(";")[0] == PROBLEM
    problem = response.json()
    code = "trailing_data" if body in TRAILING else "undecodable_image"
    assert (problem["code"], problem["status"]) == (code, 400)
    assert problem["detail"].startswith(("The PNG", "The JPEG", "The WebP")), problem
    assert images_in(data_dir) == []


async def test_ordinary_files_pass(client: httpx.AsyncClient, data_dir: Path, tmp_path: Path) -> None:
    cases = [("png", name, body) for name, body in png_ok(tmp_path).items()]
    cases += [("webp", name, body) for name, body in webp_ok().items()]
    cases += [
        ("jpeg", "photo", photo_jpeg()),
        (
            "jpeg",
            "progressive-exif",
            jpeg(progressive=True, exif=EXIF),
        ),
        ("jpeg", "mpo-two-images", mpo()),
        ("jpeg", "small-trailer", photo_jpeg() + b"\0" * 100),
    ]
    for fmt, name, body in cases:
        response = await upload(client, fmt, body)
        assert response.status_code == 201, (name, response.text[:300])
        image_id = response.json()["image_id"]
        assert (data_dir / "images" / f"{image_id}.{'jpg' if fmt == 'jpeg' else fmt}").read_bytes() == body
    assert len(images_in(data_dir)) == len(cases)


async def test_the_limits_are_settings(make_settings, data_dir) -> None:
    import io

    from PIL import Image, PngImagePlugin

    from tests.conftest import serve

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "hello")
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG", pnginfo=info)
    async with serve(make_settings(png_max_text_chunks=0)) as c:
        resp = await c.post("/upload", files={"file": ("t.png", buf.getvalue(), "image/png")})
    assert resp.status_code == 400 and resp.json()["code"] == "undecodable_image"
    assert not any((data_dir / "images").iterdir())


async def test_an_upload_the_disk_cannot_take_is_a_503_and_leaves_nothing(
    client: httpx.AsyncClient, data_dir: Path
) -> None:
    """A full disk (here the process's file size limit, which refuses writes the same way) is a
    503 `storage_full` with Retry-After, never a 500, and no part of the upload stays."""
    photo = photo_jpeg()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(photo) // 2, hard))
    try:
        response = await upload(client, "jpeg", photo)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert response.status_code == 503, response.text[:300]
    assert response.headers["content-type"].split(";")[0] == PROBLEM
    assert response.json()["code"] == "storage_full"
    assert response.headers["retry-after"] == "60"
    assert images_in(data_dir) == []
    assert (await upload(client, "jpeg", photo)).status_code == 201  # space again: served again


async def test_an_upload_with_no_file_descriptor_left_is_a_503_and_leaves_nothing(
    client: httpx.AsyncClient, data_dir: Path
) -> None:
    """No file descriptor left for the temp file (the connection caps should prevent it) is a
    503 `overloaded` with Retry-After, never a 500."""
    photo = photo_jpeg()
    lowest_free = os.open(os.devnull, os.O_RDONLY)
    os.close(lowest_free)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # no new descriptor opens
    try:
        response = await upload(client, "jpeg", photo)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert response.status_code == 503, response.text[:300]
    assert response.json()["code"] == "overloaded"
    assert response.headers["retry-after"] == "1"
    assert images_in(data_dir) == []
    assert (await upload(client, "jpeg", photo)).status_code == 201
