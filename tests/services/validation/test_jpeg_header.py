"""app.services.validation.jpeg_header: the frame header read by segments says what Pillow says.

The reader's promise is that wherever it answers, Pillow's `open` and `getexif` answer the
same (size, orientation), and that wherever Pillow refuses a walked JPEG it does not answer
(Pillow then refuses it as before). Checked on ordinary and phone-made JPEGs and on thousands
of seeded mutations of their headers: flipped bytes, bent lengths, odd and hostile segments.
"""

from __future__ import annotations

import io
import random
import struct
import warnings
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from app.core.errors import UndecodableImage
from app.core.formats import FORMATS
from app.services.validation.checks import examine_image
from app.services.validation.jpeg import check_jpeg_structure
from app.services.validation.jpeg_header import JpegHeader, jpeg_header
from tests import phone_photos
from tests.factories import encode
from tests.services.validation.samples import mapped

SMALL = phone_photos.astronaut((96, 64))


def _exif(**tags: Any) -> bytes:
    exif = Image.Exif()
    for tag, value in tags.items():
        exif[int(tag[1:], 16)] = value
    return exif.tobytes()


def _xmp(orientation: int) -> bytes:
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="{orientation}"/>'
        "</rdf:RDF></x:xmpmeta>"
    ).encode()


ORDINARY = {
    "baseline": encode(SMALL, "JPEG", quality=85),
    "progressive": encode(SMALL, "JPEG", progressive=True),
    "optimized-420": encode(SMALL, "JPEG", optimize=True, subsampling=2),
    "restart-markers": encode(SMALL, "JPEG", restart_marker_blocks=1),
    "grayscale": encode(SMALL.convert("L"), "JPEG"),
    "cmyk": encode(SMALL.convert("CMYK"), "JPEG"),
    "dpi": encode(SMALL, "JPEG", dpi=(300, 300)),
    "dpi-and-exif": encode(SMALL, "JPEG", dpi=(72, 72), exif=_exif(x0112=6, x011A=300.0, x0128=2)),
    "exif-dpi": encode(SMALL, "JPEG", exif=_exif(x0112=3, x011A=240.0, x0128=3, x010F="Maker")),
    "icc": encode(SMALL, "JPEG", icc_profile=b"\1" * 70_000),  # two APP2 chunks
    "comment": encode(SMALL, "JPEG", comment=b"a comment"),
    "xmp-orientation": encode(SMALL, "JPEG", xmp=_xmp(8)),
    "16-bit-tables": encode(SMALL, "JPEG", qtables=[[300] * 64, [2] * 64]),
    **{f"exif-orientation-{o}": encode(SMALL, "JPEG", exif=_exif(x0112=o)) for o in range(1, 9)},
    "motion-photo": phone_photos.motion_photo(),
    "mvimg": phone_photos.mvimg(),
    "samsung": phone_photos.samsung_motion_photo(),
}


def pillow_reads(body: bytes) -> tuple[int, int, Any] | None:
    """What `read_header` took from Pillow before: (width, height, orientation); None where
    Pillow refuses (whatever it raises)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(body), formats=["JPEG"]) as im:
                return (*im.size, im.getexif().get(0x0112, 1))
    except Exception:
        return None


def _same(fast: tuple[int, int, Any], expected: tuple[int, int, Any] | None) -> bool:
    """Equal answers; an EXIF orientation of 0/0 is NaN on both sides, never == itself."""
    return fast == expected or repr(fast) == repr(expected)


def fast_reads(body: bytes) -> tuple[int, int, Any] | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        header = jpeg_header(body)
    return None if header is None else (header.width, header.height, header.orientation)


@pytest.mark.parametrize("name", ORDINARY)
def test_ordinary_and_phone_jpegs_are_read_as_pillow_reads_them(name: str) -> None:
    body = ORDINARY[name]
    check_jpeg_structure(body)
    expected = pillow_reads(body)
    assert expected is not None
    assert fast_reads(body) == expected  # answered here, not left to Pillow


def test_exif_and_xmp_orientations_come_through() -> None:
    assert fast_reads(ORDINARY["exif-orientation-6"]) == (96, 64, 6)
    assert fast_reads(ORDINARY["xmp-orientation"]) == (96, 64, 8)
    info = examine_image(ORDINARY["exif-orientation-6"], FORMATS["jpeg"], 10**8)
    assert (info.width, info.height, info.upright_width, info.upright_height) == (96, 64, 64, 96)


def test_a_mapped_file_is_read_like_its_bytes(tmp_path: Path) -> None:
    with mapped(tmp_path, ORDINARY["exif-dpi"]) as data:
        assert jpeg_header(data) == jpeg_header(ORDINARY["exif-dpi"]) == JpegHeader(96, 64, 3)


def test_an_orientation_pillow_reads_as_nan_is_upright() -> None:
    # Orientation stored as the RATIONAL 0/0: NaN both ways (never == itself), so no swap.
    tiff = b"II*\x00" + struct.pack("<LHHHLLLLL", 8, 1, 0x0112, 5, 1, 26, 0, 0, 0)
    body = _insert(encode(SMALL, "JPEG"), _segment(0xE1, b"Exif\x00\x00" + tiff))
    check_jpeg_structure(body)
    fast = fast_reads(body)
    assert fast is not None and _same(fast, pillow_reads(body))
    info = examine_image(body, FORMATS["jpeg"], 10**8)
    assert (info.upright_width, info.upright_height) == (96, 64)


def _insert(body: bytes, segment: bytes) -> bytes:
    """`segment` right after the start-of-image marker."""
    return body[:2] + segment + body[2:]


def test_mpo_files_are_left_to_pillow() -> None:
    body = phone_photos.mpo()
    check_jpeg_structure(body)
    assert pillow_reads(body) is not None
    assert jpeg_header(body) is None


def _segments(body: bytes) -> list[tuple[int, int, int]]:
    """(offset, marker, end) of each segment before the first scan."""
    out, pos = [], 2
    while pos + 4 <= len(body) and body[pos] == 0xFF and body[pos + 1] != 0xDA:
        marker = body[pos + 1]
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD7:
            pos += 1 if marker == 0xFF else 2
            continue
        end = pos + 2 + int.from_bytes(body[pos + 2 : pos + 4], "big")
        if end > len(body):
            break
        out.append((pos, marker, end))
        pos = end
    return out


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


PREFIXES = [
    b"",
    b"JFIF\x00",
    b"JFIF\x00\x01\x01\x01\x00\x48\x00\x48",
    b"Exif\x00\x00",
    b"Exif\x00\x00" + _exif(x0112=6),
    b"http://ns.adobe.com/xap/1.0/\x00" + _xmp(5),
    b"ICC_PROFILE\x00",
    b"ICC_PROFILE\x00\x01\x01",
    b"MPF\x00II*\x00",
    b"Photoshop 3.0\x008BIM",
    b"Adobe",
    b"Adobe\x00\x64\x00\x00\x00\x00\x01",
    b"FPXR\x00",
]


def _mutate(body: bytes, rng: random.Random) -> bytes:
    segments = _segments(body)
    if not segments:
        return body
    offset, marker, end = rng.choice(segments)
    kind = rng.randrange(7)
    if kind == 0:  # one byte of the header region, anything
        at = rng.randrange(2, segments[-1][2])
        value = rng.choice([0x00, 0x01, 0x08, 0x0C, 0xFF, rng.randrange(256)])
        return body[:at] + bytes([value]) + body[at + 1 :]
    if kind == 1:  # a segment's payload byte (SOF fields, DQT precisions, EXIF, JFIF units)
        at = rng.randrange(offset + 4, max(offset + 5, end))
        return body[:at] + bytes([rng.randrange(256)]) + body[at + 1 :]
    if kind == 2:  # a segment shortened or lengthened, the bytes after it kept
        cut = rng.randrange(1, 8)
        payload = body[offset + 4 : end]
        payload = payload[:-cut] if rng.random() < 0.5 or len(payload) > 65_000 else payload + bytes(cut)
        return body[:offset] + _segment(marker, payload) + body[end:]
    if kind == 3:  # a new segment, any marker, a known or random payload
        payload = rng.choice(PREFIXES)[: rng.randrange(0, 40)] + rng.randbytes(rng.randrange(0, 6))
        kind_of = rng.choice([rng.randrange(256), 0xE0, 0xE1, 0xE2, 0xED, 0xEE, 0xC0, 0xC8, 0xDE])
        return body[:offset] + _segment(kind_of, payload) + body[offset:]
    if kind == 4:  # a segment twice
        return body[:end] + body[offset:end] + body[end:]
    if kind == 5:  # a standalone marker or fill bytes between segments
        standalone = rng.choice([b"\xff\x01", b"\xff\xd0", b"\xff\xff", b"\xff\x00"])
        return body[:offset] + standalone + body[offset:]
    cut = rng.randrange(offset + 2, max(offset + 3, end))  # a segment's payload truncated in place
    return body[:cut] + body[end:] if rng.random() < 0.5 else body[:offset] + body[end:]


def test_mutated_headers_get_pillows_verdict_or_are_left_to_pillow() -> None:
    rng = random.Random(20261206)
    bases = list(ORDINARY.values())
    answered = refused = walked = 0
    for _ in range(6000):
        body = rng.choice(bases)
        for _ in range(rng.randrange(1, 4)):
            body = _mutate(body, rng)
        try:
            check_jpeg_structure(body)  # uploads reach the header only after the walk
        except (UndecodableImage, ValueError):
            continue
        walked += 1
        expected, fast = pillow_reads(body), fast_reads(body)
        if fast is not None:
            answered += 1
            assert _same(fast, expected), body[:600]
        if expected is None:
            refused += 1
            assert fast is None
    # the mutations reach both verdicts, and the reader answers most walked files itself
    assert walked > 2500 and refused > 200 and answered > walked // 2, (walked, refused, answered)


def test_a_refusing_header_keeps_pillows_refusal() -> None:
    body = ORDINARY["baseline"]
    sof = next(o for o, m, _ in _segments(body) if m == 0xC0)
    twelve_bit = body[: sof + 4] + b"\x0c" + body[sof + 5 :]
    check_jpeg_structure(twelve_bit)
    assert jpeg_header(twelve_bit) is None
    with pytest.raises(UndecodableImage, match="cannot be decoded as JPEG"):
        examine_image(twelve_bit, FORMATS["jpeg"], 10**8)
