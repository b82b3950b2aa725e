"""A JPEG's frame header read as Pillow reads it, one segment at a time instead of one byte.

Pillow's JPEG plugin finds the size by reading the file a byte at a time up to the first
scan (and parsing every quantization table on the way): ~55-65 µs of a 100 KB upload's
worker-thread time, and ~110 µs of its CPU under load. `jpeg_header` reaches the same
answer by segments, for the files whose structure walk (`app.services.validation.jpeg`)
has passed, and only where it can be sure of Pillow's verdict: the markers a camera or an
encoder writes, segments shaped the way Pillow's handlers expect. The EXIF (and the XMP
orientation) it hands to Pillow's own code, in the order Pillow's `open` and `getexif` use
it, so that the orientation and every exception come from the same code as before.

Anything else (a marker Pillow reads its own way, a segment one of its handlers would stumble
on, an MPF index that makes the file an MPO, an EXIF that Pillow would refuse) returns None:
Pillow reads that file as it always did, with its own verdict and messages.
`tests/services/validation/test_jpeg_header.py` compares the two on photos and on thousands
of mutated headers. It leans on Pillow's internals (its marker table and handlers, which
exceptions `_read_dpi_from_exif` catches, how `getexif` caches): requirements.txt pins Pillow,
and an upgrade must pass that test.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from typing import Any

from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile

ORIENTATION = 0x0112  # the EXIF tag
# Pillow's frame markers (its SOF handler), and the segments its `Skip` handler passes over.
_FRAMES = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_SKIPPED = frozenset({0xC4, 0xCC, 0xDC, 0xDD, 0xDF})  # DHT, DAC, DNL, DRI, EXP
_DQT, _SOS, _COM = 0xDB, 0xDA, 0xFE
_APPS = range(0xE0, 0xF0)
_SEGMENTS = _FRAMES | _SKIPPED | {_DQT, _COM, *_APPS}  # read here; any other marker: Pillow's way
_LAYERS = (1, 3, 4)  # L, RGB, CMYK: Pillow refuses any other component count
_XMP = b"http://ns.adobe.com/xap/1.0/\x00"


@dataclass(frozen=True)
class JpegHeader:
    """What Pillow's `open` and `getexif` would say: the stored size and the EXIF orientation
    (whatever value Pillow finds; 1 without one)."""

    width: int
    height: int
    orientation: Any


class _ExifProbe(JpegImageFile):
    """Pillow's JPEG image with only the `info` its marker loop would have collected: its own
    `_read_dpi_from_exif` (how `open` ends) and `getexif` then run unchanged."""

    def __init__(self, info: dict[str, Any]) -> None:  # no file: the header is already read
        Image.Image.__init__(self)
        self.info.update(info)


def jpeg_header(data: bytes | mmap.mmap) -> JpegHeader | None:
    """The size and orientation Pillow would read from this walked JPEG, or None where Pillow
    must read it itself (its verdict may differ from a plain reading, or the file is rare)."""
    size = len(data)
    if data[:3] != b"\xff\xd8\xff":
        return None
    info: dict[str, Any] = {}
    frame: tuple[int, int] | None = None
    pos = 2
    while True:
        if pos + 2 > size or data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if 0xD0 <= marker <= 0xD7:  # RSTn: no length
            pos += 2
            continue
        if marker == _SOS:
            break  # Pillow's loop stops at the first scan
        if marker not in _SEGMENTS or pos + 4 > size:
            return None  # 0x00, TEM, reserved, SOI, EOI, JPG and JPGn, DHP: Pillow's own way
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        start, end = pos + 4, pos + 2 + length
        if length < 2 or end > size:
            return None
        if marker in _FRAMES:
            if frame is not None or not _frame_as_pillow_reads_it(data, start, end):
                return None
            width = int.from_bytes(data[start + 3 : start + 5], "big")
            frame = width, int.from_bytes(data[start + 1 : start + 3], "big")
        elif marker == _DQT:
            if not _tables_fit(data, start, end):
                return None
        elif marker in _APPS and not _application(data, marker, start, end, info):
            return None
        pos = end
    if frame is None or frame[0] <= 0 or frame[1] <= 0:
        return None
    width, height = frame
    try:
        Image._decompression_bomb_check(frame)  # what `Image.open` checks (and warns about) next
        orientation: Any = 1
        if "exif" in info or "xmp" in info:
            probe = _ExifProbe(info)
            probe._read_dpi_from_exif()
            orientation = probe.getexif().get(ORIENTATION, 1)
    except Exception:  # Pillow's own path raises it again, with its own wording and type
        return None
    return JpegHeader(width, height, orientation)


def _frame_as_pillow_reads_it(data: bytes | mmap.mmap, start: int, end: int) -> bool:
    """A frame header Pillow's SOF handler accepts: 8-bit samples, 1, 3 or 4 components, and
    whole 3-byte component entries (a cut one is an IndexError there)."""
    count = end - start
    if count < 6 or (count - 6) % 3:
        return False
    return data[start] == 8 and data[start + 5] in _LAYERS


def _tables_fit(data: bytes | mmap.mmap, start: int, end: int) -> bool:
    """A DQT segment whose quantization tables are all whole (Pillow: "bad quantization table
    marker" otherwise): 1 + 64 bytes each, 1 + 128 for 16-bit tables."""
    pos = start
    while pos < end:
        length = 65 if data[pos] < 16 else 129
        if end - pos < length:
            return False
        pos += length
    return True


def _application(data: bytes | mmap.mmap, marker: int, start: int, end: int, info: dict[str, Any]) -> bool:
    """Collect an APPn segment as Pillow's APP handler would (into `info`); False for one it
    could stumble on or that changes what it opens (Photoshop resources, Adobe or JFIF too
    short, a cut ICC profile chunk, an MPF index)."""
    count = end - start
    head = data[start : start + 14]
    if marker == 0xE0 and head.startswith(b"JFIF"):
        if count < 7:
            return False
        if count >= 12 and data[start + 7] in (1, 2):  # Pillow has "dpi": no DPI from the EXIF
            info["dpi"] = True
    elif marker == 0xE1 and head.startswith(b"Exif\x00\x00"):
        segment = bytes(data[start:end])
        info["exif"] = info["exif"] + segment[6:] if "exif" in info else segment
    elif marker == 0xE1 and data[start : start + len(_XMP)] == _XMP:
        info["xmp"] = bytes(data[start + len(_XMP) : end])
    elif marker == 0xE2 and head.startswith(b"ICC_PROFILE\x00"):
        return count >= 14  # shorter: Pillow's sort of the chunks indexes past its end
    elif marker == 0xE2 and head.startswith(b"MPF\x00"):
        return False  # maybe an MPO: Pillow's factory decides
    elif marker == 0xED and head.startswith(b"Photoshop 3.0\x00"):
        return False
    elif marker == 0xEE and head.startswith(b"Adobe"):
        return count >= 7
    return True
