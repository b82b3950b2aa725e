"""app.services.validation.jpeg: the JPEG marker walk -- whole files pass, truncations and hostile
segments fail, chained images (MPF) up to the limit, the segment limits are settings."""

from __future__ import annotations

import random
import re

import pytest

from app.core.errors import UndecodableImage
from app.core.formats import FORMATS
from app.services.validation.checks import inspect_image
from app.services.validation.jpeg import _SCAN_END, check_jpeg_structure
from tests.services.validation.samples import EXIF, jpeg, jpeg_hostile, limits, mpo

VARIANTS = {
    "baseline": {},
    "progressive": {"progressive": True},
    "restart-markers": {"restart_marker_blocks": 1},
    "optimized": {"optimize": True},
    "exif": {"exif": EXIF},
    "icc": {"icc_profile": b"\0" * 200_000},  # split over 4 APP2 segments
}


@pytest.mark.parametrize("options", VARIANTS.values(), ids=VARIANTS.keys())
def test_whole_jpegs_pass_and_every_truncation_fails(options: dict[str, object]) -> None:
    body = jpeg(**options)
    check_jpeg_structure(body)
    check_jpeg_structure(body + b"appended data, as some cameras do")
    for cut in (3, 200, len(body) // 2, len(body) - 2, len(body) - 1):
        with pytest.raises(UndecodableImage):
            check_jpeg_structure(body[:cut])


@pytest.mark.parametrize(("name", "body"), jpeg_hostile().items(), ids=jpeg_hostile().keys())
@pytest.mark.parametrize("decode_check", ["structure", "draft"])
def test_hostile_jpeg_is_refused(name: str, body: bytes, decode_check: str) -> None:
    with pytest.raises(UndecodableImage):
        inspect_image(body, FORMATS["jpeg"], 40_000_000, decode_check)  # type: ignore[arg-type]


def test_chained_jpegs_pass_up_to_the_limit() -> None:
    # MPF files (MPO stereo pairs, Ultra HDR gain maps) chain whole JPEGs after the first EOI.
    body = mpo()
    check_jpeg_structure(body)
    assert inspect_image(body, FORMATS["jpeg"], 40_000_000) == (512, 512)
    with pytest.raises(UndecodableImage, match="after its end-of-image"):
        check_jpeg_structure(body, limits(jpeg_max_images=1))
    with pytest.raises(UndecodableImage):
        check_jpeg_structure(body[:-100])  # the second image truncated


def test_jpeg_limits_are_settings() -> None:
    body = jpeg(exif=EXIF)  # APP0 (JFIF) + APP1
    check_jpeg_structure(body + b"\0" * 4096)
    with pytest.raises(UndecodableImage, match="4097 bytes after"):
        check_jpeg_structure(body + b"\0" * 4097)
    with pytest.raises(UndecodableImage, match="1 bytes after"):
        check_jpeg_structure(body + b"\0", limits(jpeg_max_trailing_bytes=0))
    with pytest.raises(UndecodableImage, match="more than 1 metadata segments"):
        check_jpeg_structure(body, limits(image_max_metadata_segments=1))
    with pytest.raises(UndecodableImage, match="metadata holds more than 10 bytes"):
        check_jpeg_structure(body, limits(image_max_metadata_bytes=10))
    with pytest.raises(UndecodableImage, match="more than 5 segments"):
        check_jpeg_structure(body, limits(image_max_chunks=5))


def test_corrupt_segment_length_fails() -> None:
    body = bytearray(jpeg())
    body[4:6] = b"\xff\xff"  # APP0 length runs past the end
    with pytest.raises(UndecodableImage):
        check_jpeg_structure(bytes(body))


def test_the_scan_ends_where_pythons_re_says() -> None:
    # The scan's RE2 pattern (Latin-1: byte for byte) against the same pattern in `re`, on random
    # entropy-coded-like data dense in 0xFF: stuffing, restart markers, fill, other markers.
    pattern = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
    rng = random.Random(16)
    for _ in range(300):
        data = bytes(
            rng.choice((0xFF, 0x00, 0xD0, 0xD7, 0xD8, 0xD9, 0xC4, 0x7F, rng.randrange(256)))
            for _ in range(64)
        )
        for pos in (0, 1, 17, 63):
            expected = pattern.search(data, pos)
            found = _SCAN_END.search(data, pos)
            assert (found.start() if found else None) == (expected.start() if expected else None)
