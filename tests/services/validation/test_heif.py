"""app.services.validation.heif: the HEIF walk accepts top-level boxes that exactly cover the
file (32-bit, 64-bit and to-the-end sizes) and refuses truncated or overlong ones."""

from __future__ import annotations

import struct

import pytest

from app.core.errors import UndecodableImage
from app.services.validation.heif import check_heif_structure


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def large_box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 1) + kind + struct.pack(">Q", 16 + len(payload)) + payload


FTYP = box(b"ftyp", b"heic\0\0\0\0mif1heic")
META = box(b"meta", b"\0" * 40)


def test_boxes_that_cover_the_file_pass() -> None:
    check_heif_structure(FTYP + META + box(b"mdat", b"x" * 1000))
    check_heif_structure(FTYP + META + large_box(b"mdat", b"x" * 1000))
    check_heif_structure(FTYP + META + struct.pack(">I", 0) + b"mdat" + b"x" * 1000)  # to the end


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (FTYP + META + box(b"mdat", b"x" * 1000)[:-1], "runs past the end"),
        (FTYP + META + b"\0\0\0", "inside a box header"),
        (FTYP + META + struct.pack(">I", 1) + b"mdat" + b"\0\0", "inside a box header"),
        (FTYP + struct.pack(">I", 4) + b"meta", "runs past the end"),  # smaller than its header
        (FTYP + large_box(b"mdat", b"x" * 10)[:-1], "runs past the end"),
    ],
    ids=["box-past-end", "truncated-header", "truncated-large-header", "box-under-8", "large-box-past-end"],
)
def test_truncated_or_corrupt_boxes_are_refused(body: bytes, message: str) -> None:
    with pytest.raises(UndecodableImage, match=message):
        check_heif_structure(body)
