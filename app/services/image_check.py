"""Cheap checks that an upload really is the image it claims to be, run in a worker thread.

Pillow reads the header (format, size: the pixel limit stops decompression bombs before
any pixel is inflated). Then one full pass over the file, without decoding pixels:

- PNG: `verify()` walks every chunk and checks its CRC.
- JPEG (`structure`, the default): a walk over the marker segments up to the first
  scan, then a search for the end-of-image marker from the end of the file. It finds
  truncation, the common way a JPEG upload breaks, in microseconds (a draft decode of
  a 5 MB photo costs ~40 ms of CPU, which would cap uploads at ~25/s per core).
- JPEG (`draft`): a draft decode at 1/8 scale, which also runs libjpeg's entropy decoder.
- WebP: the RIFF header's size must fit the file; HEIC/HEIF: the top-level ISO-BMFF
  boxes must exactly cover the file (pillow-heif reads the header).
"""

from __future__ import annotations

import io
import mmap
from typing import Literal

from PIL import Image, UnidentifiedImageError

from app.core.errors import TooManyPixels, UndecodableImage
from app.core.formats import ImageFormat, enable_heif

DecodeCheck = Literal["structure", "draft"]

_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_SOS = 0xDA
_EOI = b"\xff\xd9"


def check_jpeg_structure(data: bytes | mmap.mmap) -> None:
    """Raise UndecodableImage unless the JPEG is whole: intact segments up to its first
    scan, then an end-of-image marker after that scan's start.

    Inside entropy-coded data every 0xFF byte is followed by 0x00 or a restart marker,
    so an FF D9 after the first scan header is the end of the image; a truncated upload
    has none. Searching for it from the end touches only the file's tail, where it is.
    """
    size = len(data)
    if data[:2] != b"\xff\xd8":
        raise UndecodableImage("The JPEG has no start-of-image marker")
    pos = 2
    while True:
        if pos + 2 > size:
            raise UndecodableImage("The JPEG is truncated (no image data)")
        if data[pos] != 0xFF:
            raise UndecodableImage(f"The JPEG is corrupt (no marker at byte {pos})")
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker == _EOI[1]:
            raise UndecodableImage("The JPEG has no image data")
        if pos + 4 > size:
            raise UndecodableImage("The JPEG is truncated inside a segment header")
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        end = pos + 2 + length
        if length < 2 or end > size:
            raise UndecodableImage("The JPEG is truncated or corrupt (segment runs past the end)")
        if marker == _SOS:
            if data.rfind(_EOI, end) < 0:
                raise UndecodableImage("The JPEG is truncated (no end-of-image marker)")
            return
        pos = end


def check_riff_structure(data: bytes | mmap.mmap) -> None:
    """Raise UndecodableImage unless the WebP's RIFF header size covers exactly the file."""
    declared = int.from_bytes(data[4:8], "little") + 8
    if declared > len(data):
        raise UndecodableImage("The WebP is truncated")


def check_bmff_structure(data: bytes | mmap.mmap) -> None:
    """Raise UndecodableImage unless the HEIF's top-level boxes exactly cover the file."""
    size, pos = len(data), 0
    while pos < size:
        if pos + 8 > size:
            raise UndecodableImage("The HEIF is truncated inside a box header")
        box = int.from_bytes(data[pos : pos + 4], "big")
        header = 8
        if box == 1:
            if pos + 16 > size:
                raise UndecodableImage("The HEIF is truncated inside a box header")
            box, header = int.from_bytes(data[pos + 8 : pos + 16], "big"), 16
        elif box == 0:
            box = size - pos
        if box < header or pos + box > size:
            raise UndecodableImage("The HEIF is truncated or corrupt (a box runs past the end)")
        pos += box


def inspect_image(
    data: mmap.mmap | bytes, fmt: ImageFormat, max_pixels: int, decode_check: DecodeCheck = "structure"
) -> tuple[int, int]:
    """(width, height) of an upload's bytes, after checking they really are a whole `fmt` image.

    `data` is usually a read-only mmap of the temp file: one mapping serves the hash,
    Pillow and the structure walk, with no copy of the upload in memory.
    """
    if fmt.name == "heic":
        enable_heif()
    fp = data if isinstance(data, mmap.mmap) else io.BytesIO(data)
    fp.seek(0)
    try:
        with Image.open(fp, formats=[fmt.pillow]) as im:
            width, height = im.size
            if width * height > max_pixels:
                raise TooManyPixels(
                    f"The image has {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
                )
            if fmt.pillow == "PNG":
                im.verify()
            elif fmt.pillow == "JPEG" and decode_check == "draft":
                im.draft(im.mode, (max(1, width // 8), max(1, height // 8)))
                im.load()
        if fmt.pillow == "JPEG" and decode_check == "structure":
            check_jpeg_structure(data)
        elif fmt.pillow == "WEBP":
            check_riff_structure(data)
        elif fmt.pillow == "HEIF":
            check_bmff_structure(data)
    except Image.DecompressionBombError as exc:
        raise TooManyPixels(f"The image has too many pixels: {exc}") from None
    except UnidentifiedImageError:
        raise UndecodableImage(f"The image cannot be decoded as {fmt.pillow}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UndecodableImage(f"The image cannot be decoded ({exc})") from None
    if width < 1 or height < 1:
        raise UndecodableImage("The image has no pixels")
    return width, height
