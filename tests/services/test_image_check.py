"""Upload image checks: JPEG structure walk, PNG CRC walk, pixel limit."""

from __future__ import annotations

import io
import mmap
from pathlib import Path

import pytest
from PIL import Image
from skimage import data

from app.core.errors import TooManyPixels, UndecodableImage
from app.core.formats import FORMATS
from app.services.image_check import check_jpeg_structure, inspect_image


def jpeg(**options: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, "JPEG", **options)
    return buf.getvalue()


VARIANTS = {
    "baseline": {},
    "progressive": {"progressive": True},
    "restart-markers": {"restart_marker_blocks": 1},
    "optimized": {"optimize": True},
    "exif": {"exif": b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x00"},
}


@pytest.mark.parametrize("options", VARIANTS.values(), ids=VARIANTS.keys())
def test_whole_jpegs_pass_and_every_truncation_fails(options: dict[str, object]) -> None:
    body = jpeg(**options)
    check_jpeg_structure(body)
    check_jpeg_structure(body + b"appended data, as motion photos do")
    for cut in (3, 200, len(body) // 2, len(body) - 2, len(body) - 1):
        with pytest.raises(UndecodableImage):
            check_jpeg_structure(body[:cut])


def test_corrupt_segment_length_fails() -> None:
    body = bytearray(jpeg())
    body[4:6] = b"\xff\xff"  # APP0 length runs past the end
    with pytest.raises(UndecodableImage):
        check_jpeg_structure(bytes(body))


def mapped(tmp_path: Path, body: bytes) -> mmap.mmap:
    path = tmp_path / "upload"
    path.write_bytes(body)
    with open(path, "rb") as f:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


@pytest.mark.parametrize("decode_check", ["structure", "draft"])
def test_inspect_image_modes(tmp_path: Path, decode_check: str) -> None:
    whole = mapped(tmp_path, jpeg(progressive=True))
    assert inspect_image(whole, FORMATS["jpeg"], 40_000_000, decode_check) == (512, 512)  # type: ignore[arg-type]
    for truncated in (jpeg()[:-500], mapped(tmp_path, jpeg()[:-500])):
        with pytest.raises(UndecodableImage):
            inspect_image(truncated, FORMATS["jpeg"], 40_000_000, decode_check)  # type: ignore[arg-type]
    with pytest.raises(TooManyPixels):
        inspect_image(whole, FORMATS["jpeg"], 100)


def test_png_crc_is_checked(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(data.coffee()).save(buf, "PNG")
    body = bytearray(buf.getvalue())
    assert inspect_image(mapped(tmp_path, bytes(body)), FORMATS["png"], 40_000_000) == (600, 400)
    body[len(body) // 2] ^= 0xFF
    with pytest.raises(UndecodableImage):
        inspect_image(mapped(tmp_path, bytes(body)), FORMATS["png"], 40_000_000)
