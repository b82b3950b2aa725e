"""Cheap checks that an upload really is the image it claims to be, run in a worker thread.

First one pass over the file's structure, without decoding pixels, by the walk of its
format: `jpeg`, `png` (a bounded inflate), `webp`, `heif` (HEIC, AVIF), each bounded by
`limits`; then the header is read (format, size: the pixel limit stops decompression
bombs before any pixel is inflated): an ordinary JPEG's by `jpeg_header`, which reads it as
Pillow would, ~110 µs cheaper per upload; any other file's by Pillow. `draft` also decodes a
JPEG at 1/8 scale, running libjpeg's entropy decoder (~40 ms of CPU for a 5 MB photo, which
caps uploads at ~25/s per core).
"""

from __future__ import annotations

import io
import mmap
from dataclasses import dataclass
from typing import IO, Literal, cast

from PIL import Image, UnidentifiedImageError

from app.core.errors import TooManyPixels, UndecodableImage
from app.core.formats import ImageFormat, enable_heif
from app.services.validation.heif import check_heif_structure
from app.services.validation.jpeg import check_jpeg_structure
from app.services.validation.jpeg_header import ORIENTATION, jpeg_header
from app.services.validation.jpeg_trailer import Trailer
from app.services.validation.limits import IntegrityLimits
from app.services.validation.png import check_png_structure
from app.services.validation.settings import DEFAULT_LIMITS
from app.services.validation.webp import check_webp_structure

DecodeCheck = Literal["structure", "draft"]


def check_structure(
    data: bytes | mmap.mmap, fmt: ImageFormat, limits: IntegrityLimits = DEFAULT_LIMITS
) -> Trailer | None:
    """The structure walk of `fmt` (no pixels decoded, nothing inflated); a JPEG's declared
    trailer, which is not part of the image."""
    if fmt.pillow == "PNG":
        check_png_structure(data, limits)
    elif fmt.pillow == "JPEG":
        return check_jpeg_structure(data, limits)
    elif fmt.pillow == "WEBP":
        check_webp_structure(data, limits)
    elif fmt.pillow in ("HEIF", "AVIF"):
        check_heif_structure(data)
    return None


@dataclass(frozen=True)
class ImageInfo:
    """What the checks found: stored and upright (EXIF orientation 5-8 swaps) size, and the
    declared trailer to cut off (None: keep every byte)."""

    width: int
    height: int
    upright_width: int
    upright_height: int
    trailer: Trailer | None = None


def inspect_image(
    data: mmap.mmap | bytes,
    fmt: ImageFormat,
    max_pixels: int,
    decode_check: DecodeCheck = "structure",
    limits: IntegrityLimits = DEFAULT_LIMITS,
) -> tuple[int, int]:
    """(width, height) of an upload's bytes, after checking they really are a whole `fmt` image."""
    info = examine_image(data, fmt, max_pixels, decode_check, limits)
    return info.width, info.height


def examine_image(
    data: mmap.mmap | bytes,
    fmt: ImageFormat,
    max_pixels: int,
    decode_check: DecodeCheck = "structure",
    limits: IntegrityLimits = DEFAULT_LIMITS,
) -> ImageInfo:
    """Check that `data` really is a whole `fmt` image; its sizes and declared trailer.

    `data` is usually a read-only mmap of the temp file: one mapping serves the hash,
    the structure walk and Pillow, with no copy of the upload in memory.
    """
    return read_header(data, fmt, max_pixels, check_structure(data, fmt, limits), decode_check)


def read_header(
    data: mmap.mmap | bytes,
    fmt: ImageFormat,
    max_pixels: int,
    trailer: Trailer | None,
    decode_check: DecodeCheck = "structure",
) -> ImageInfo:
    """The second half of `examine_image`, for bytes whose structure walk already passed (with
    `trailer` its result): the header is read (size within `max_pixels`, orientation), an
    ordinary JPEG's by `jpeg_header`, any other file's by Pillow."""
    if fmt.pillow == "JPEG" and decode_check == "structure":
        header = jpeg_header(data)  # None: a file Pillow must read itself (below)
        if header is not None:
            _check_pixels(header.width, header.height, max_pixels)
            return _sized(header.width, header.height, header.orientation, trailer)
    if fmt.name == "heic":
        enable_heif()
    fp = data if isinstance(data, mmap.mmap) else io.BytesIO(data)
    fp.seek(0)
    try:
        # An mmap is file enough for Pillow (read, seek, tell), but no `IO[bytes]` to typeshed.
        with Image.open(cast(IO[bytes], fp), formats=[fmt.pillow]) as im:
            width, height = im.size
            _check_pixels(width, height, max_pixels)
            orientation = im.getexif().get(ORIENTATION, 1)
            if fmt.pillow == "JPEG" and decode_check == "draft":
                im.draft(im.mode, (max(1, width // 8), max(1, height // 8)))
                im.load()
    except Image.DecompressionBombError:  # Pillow's own limit (2 x ~89 MP), far above ours
        raise TooManyPixels(f"The image has too many pixels; the limit is {max_pixels}") from None
    except UnidentifiedImageError:
        raise UndecodableImage(f"The image cannot be decoded as {fmt.pillow}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UndecodableImage(f"The image cannot be decoded ({exc})") from None
    return _sized(width, height, orientation, trailer)


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    pixels = width * height
    if pixels > max_pixels:
        raise TooManyPixels(f"The image has {width}x{height} = {pixels} pixels; the limit is {max_pixels}")


def _sized(width: int, height: int, orientation: object, trailer: Trailer | None) -> ImageInfo:
    """The checks' result for a header (within the pixel limit) that Pillow, or `jpeg_header` as
    Pillow would, has read."""
    if width < 1 or height < 1:
        raise UndecodableImage("The image has no pixels")
    swapped = orientation in (5, 6, 7, 8)  # transposed or rotated by 90 degrees
    return ImageInfo(width, height, *((height, width) if swapped else (width, height)), trailer)
