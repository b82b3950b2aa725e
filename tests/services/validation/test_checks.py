"""app.services.validation.checks: inspect_image's decode-check modes and pixel limit, and
read_header after a walk done elsewhere. Each format's own walk is tested in test_<format>.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.errors import TooManyPixels, UndecodableImage
from app.core.formats import FORMATS
from app.services.validation.checks import check_structure, inspect_image, read_header
from app.services.validation.jpeg_trailer import Trailer
from tests.services.validation.samples import jpeg, mapped


@pytest.mark.parametrize("decode_check", ["structure", "draft"])
def test_inspect_image_modes(tmp_path: Path, decode_check: str) -> None:
    whole = mapped(tmp_path, jpeg(progressive=True), "whole")
    assert inspect_image(whole, FORMATS["jpeg"], 40_000_000, decode_check) == (512, 512)  # type: ignore[arg-type]
    for truncated in (jpeg()[:-500], mapped(tmp_path, jpeg()[:-500], "truncated")):
        with pytest.raises(UndecodableImage):
            inspect_image(truncated, FORMATS["jpeg"], 40_000_000, decode_check)  # type: ignore[arg-type]
    with pytest.raises(TooManyPixels):
        inspect_image(whole, FORMATS["jpeg"], 100)


def test_read_header_after_a_walk_done_elsewhere_still_checks_pixels_and_the_header() -> None:
    # An upload over MAX_UPLOAD_BYTES: the walk that found its declared trailer is the check.
    fmt, body = FORMATS["jpeg"], jpeg()
    trailer = Trailer(len(body), "motion_photo", ("video/mp4",))
    info = read_header(body, fmt, 512 * 512, trailer)
    assert (info.width, info.height, info.trailer) == (512, 512, trailer)
    with pytest.raises(TooManyPixels):
        read_header(body, fmt, 512 * 512 - 1, trailer)
    sof = body.index(b"\xff\xc0")
    twelve_bit = body[: sof + 4] + b"\x0c" + body[sof + 5 :]  # Pillow reads 8-bit samples only
    assert check_structure(twelve_bit, fmt) is None  # the walk does not look inside SOF
    with pytest.raises(UndecodableImage):
        read_header(twelve_bit, fmt, 512 * 512, None)
