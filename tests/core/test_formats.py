"""app.core.formats: sniffing image formats by their magic bytes, and the allowed-format check."""

from __future__ import annotations

import pytest

from app.core.errors import UnsupportedMediaType
from app.core.formats import BY_EXTENSION, FORMATS, SNIFF_BYTES, accepted_format, enable_heif, sniff_format
from tests.factories import encode, jpeg_bytes, png_bytes


def test_real_encoded_images_are_recognised() -> None:
    from PIL import Image

    image = Image.new("RGB", (8, 8), (1, 2, 3))
    assert sniff_format(jpeg_bytes()[:SNIFF_BYTES]) is FORMATS["jpeg"]
    assert sniff_format(png_bytes()[:SNIFF_BYTES]) is FORMATS["png"]
    assert sniff_format(encode(image, "WEBP")[:SNIFF_BYTES]) is FORMATS["webp"]
    enable_heif()
    assert sniff_format(encode(image, "HEIF")[:SNIFF_BYTES]) is FORMATS["heic"]


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"\xff\xd8",  # a JPEG start cut short
        b"\x89PNG\r\n\x1a",  # a PNG signature one byte short
        b"RIFF\x00\x00\x00\x00WAVE",  # a RIFF that is not WebP
        b"\x00\x00\x00\x18ftypmp42",  # an MP4, not HEIF
        b"GIF89a\x00\x00\x00\x00\x00\x00",
        b"BM\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
        b"<svg xmlns=",
    ],
)
def test_other_bytes_are_not_an_image_format(head: bytes) -> None:
    assert sniff_format(head) is None


@pytest.mark.parametrize("brand", [b"heic", b"heix", b"mif1", b"msf1", b"hevc"])
def test_every_heif_brand_is_heic(brand: bytes) -> None:
    assert sniff_format(b"\x00\x00\x00\x18ftyp" + brand) is FORMATS["heic"]


def test_accepted_format_refuses_a_known_format_that_is_not_allowed() -> None:
    assert accepted_format(png_bytes(), ["png", "jpeg"]) is FORMATS["png"]
    with pytest.raises(UnsupportedMediaType, match=r"The upload is not a supported image \(JPEG\)") as caught:
        accepted_format(png_bytes(), ["jpeg"], what="The upload")
    assert caught.value.status == 400
    assert caught.value.code == "unsupported_media_type"


def test_accepted_format_names_the_allowed_formats_sorted() -> None:
    with pytest.raises(UnsupportedMediaType, match=r"\(HEIC, JPEG, PNG\)"):
        accepted_format(b"not an image", ["png", "jpeg", "heic"])


def test_extensions_map_back_to_their_formats() -> None:
    assert {ext: fmt.name for ext, fmt in BY_EXTENSION.items()} == {
        "jpg": "jpeg",
        "png": "png",
        "webp": "webp",
        "heic": "heic",
        "avif": "avif",
    }
    assert all(fmt.mime == f"image/{fmt.name}" for fmt in FORMATS.values())
