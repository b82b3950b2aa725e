"""app.analyzers.imaging: decoding for analyzers (EXIF orientation applied, any mode to RGB or
grey, JPEG draft reductions), on real encoded images."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.analyzers.imaging import load_gray, load_rgb, load_rgb_reduced, to_gray, to_rgb
from app.core.errors import UndecodableImage
from tests.factories import encode


def oriented_jpeg(orientation: int) -> bytes:
    """A 60x40 JPEG, left half red, right half blue, with an EXIF orientation tag."""
    pixels = np.zeros((40, 60, 3), np.uint8)
    pixels[:, :30] = (255, 0, 0)
    pixels[:, 30:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(Image.fromarray(pixels), "JPEG", quality=95, exif=exif.tobytes())


def test_exif_orientation_is_applied_from_bytes_and_from_a_path(tmp_path: Path) -> None:
    body = oriented_jpeg(6)  # stored sideways: rotate 90 degrees clockwise to view
    path = tmp_path / "photo.jpg"
    path.write_bytes(body)
    for source in (body, path):
        image = load_rgb(source)
        assert image.size == (40, 60) and image.mode == "RGB"
        top, bottom = np.asarray(image)[5, 20], np.asarray(image)[55, 20]
        assert top[0] > 200 and top[2] < 60  # red on top after the rotation
        assert bottom[2] > 200 and bottom[0] < 60
    assert load_rgb(oriented_jpeg(1)).size == (60, 40)


def test_draft_decoding_keeps_at_least_the_size_asked_for() -> None:
    body = encode(Image.new("RGB", (800, 600), (90, 120, 150)), "JPEG")
    assert load_rgb(body).size == (800, 600)
    small = load_rgb(body, min_size=(200, 150))
    assert small.size == (200, 150)  # reduced 4x while decoding
    assert load_rgb(body, min_size=(201, 150)).size == (400, 300)


def test_reduced_loading_reports_its_factor() -> None:
    body = encode(Image.new("RGB", (800, 600), (90, 120, 150)), "JPEG")
    image, k = load_rgb_reduced(body, long_side=100)
    assert (image.size, k) == ((100, 75), 8.0)
    image, k = load_rgb_reduced(body, long_side=300)
    assert (image.size, k) == ((400, 300), 2.0)
    image, k = load_rgb_reduced(body, long_side=2000)
    assert (image.size, k) == ((800, 600), 1.0)
    png, k = load_rgb_reduced(encode(Image.new("RGB", (800, 600)), "PNG"), long_side=100)
    assert (png.size, k) == ((800, 600), 1.0)  # only JPEGs are reduced while decoding


def test_gray_loading_reads_the_luma_of_a_colour_jpeg() -> None:
    body = encode(Image.new("RGB", (64, 64), (0, 255, 0)), "JPEG", quality=95)
    gray = load_gray(body)
    assert gray.mode == "L" and gray.size == (64, 64)
    assert abs(int(np.asarray(gray).mean()) - 150) <= 3  # BT.601 luma of pure green


@pytest.mark.parametrize(
    ("image", "pixel"),
    [
        (Image.new("RGBA", (4, 4), (255, 0, 0, 0)), (255, 255, 255)),  # transparent: on white
        (Image.new("RGBA", (4, 4), (255, 0, 0, 255)), (255, 0, 0)),
        (Image.new("LA", (4, 4), (0, 0)), (255, 255, 255)),
        (Image.new("L", (4, 4), 77), (77, 77, 77)),
        (Image.new("I;16", (4, 4), 0x8000), (128, 128, 128)),  # 16 bits scaled to 8
        (Image.new("CMYK", (4, 4), (0, 0, 0, 0)), (255, 255, 255)),
    ],
    ids=["rgba-clear", "rgba-opaque", "la-clear", "l", "i16", "cmyk"],
)
def test_every_mode_becomes_rgb(image: Image.Image, pixel: tuple[int, int, int]) -> None:
    rgb = to_rgb(image)
    assert rgb.mode == "RGB" and rgb.getpixel((1, 1)) == pixel


def test_a_palette_with_a_transparent_entry_is_composited_on_white() -> None:
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 0, 255, 0, 0])
    image.info["transparency"] = 0
    assert to_rgb(image).getpixel((0, 0)) == (255, 255, 255)
    assert to_gray(image).getpixel((0, 0)) == 255


def test_rgb_and_l_pass_through_unchanged() -> None:
    rgb = Image.new("RGB", (2, 2))
    gray = Image.new("L", (2, 2))
    assert to_rgb(rgb) is rgb and to_gray(gray) is gray


@pytest.mark.parametrize("body", [b"", b"not an image", encode(Image.new("RGB", (64, 64)), "JPEG")[:200]])
def test_undecodable_bytes_are_400(body: bytes) -> None:
    with pytest.raises(UndecodableImage):
        load_rgb(body)
    with pytest.raises(UndecodableImage):
        load_gray(body)


def test_heic_is_decoded_too() -> None:
    from app.core.formats import enable_heif

    enable_heif()
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(buffer, "HEIF")
    image = load_rgb(buffer.getvalue())
    assert image.size == (32, 32) and image.getpixel((16, 16))[0] > 150
