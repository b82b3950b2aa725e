"""Cheap checks that an upload really is the image it claims to be, run in a worker thread.

First one pass over the file's structure, without decoding pixels (PNG: a bounded inflate);
then Pillow reads the header (format, size: the pixel limit stops decompression bombs
before any pixel is inflated). Every bound is a setting (`IntegrityLimits.from_settings`).

- PNG (`png_check`): every chunk's CRC, IHDR first, IDAT contiguous, only text, tIME and
  APNG frames after the image data, nothing after IEND, text and metadata bounded; the
  image data inflated as far as its first 16 KiB of rows (bounded work): an empty,
  truncated or foreign stream with right CRCs is refused.
- JPEG: a walk over every marker segment, scans included (the entropy-coded data is
  skipped by one C-level regex search per scan, ~1 ms per 2 MB): APPn/COM metadata
  bounded in count and bytes, an end-of-image marker, then further whole JPEGs (MPF: Ultra
  HDR gain maps, MPO views; chained, or where the MPF index puts them), then a trailer: one
  the file declares (Motion Photo, MVIMG, Samsung SEF: `jpeg_trailer`) is returned to be cut
  off, an undeclared one may hold `jpeg_max_trailing_bytes` (else `trailing_data`). `draft`
  also decodes at 1/8 scale, running libjpeg's entropy decoder (~40 ms of CPU for a 5 MB
  photo, which caps uploads at ~25/s per core).
- WebP: the RIFF size covers exactly the file; every chunk (padded to even) within it;
  one image (VP8/VP8L, or ANMF frames after VP8X); ICCP/EXIF/XMP and unknown chunks
  bounded as metadata. HEIC/HEIF and AVIF: the top-level ISO-BMFF boxes exactly cover the file.
"""

from __future__ import annotations

import io
import mmap
import re
from dataclasses import dataclass, field
from typing import IO, Literal, cast

from PIL import Image, UnidentifiedImageError

from app.core.config import Settings
from app.core.errors import TooManyPixels, TrailingData, UndecodableImage
from app.core.formats import ImageFormat, enable_heif
from app.services.validation.jpeg_trailer import MPF_HEADER, XMP_HEADER, Trailer, declared_trailer, mpf_images
from app.services.validation.png import check_png_structure

DecodeCheck = Literal["structure", "draft"]


@dataclass(frozen=True)
class IntegrityLimits:
    """The bounds of the structure walk; each is the setting of the same name."""

    image_max_chunks: int
    png_max_text_chunks: int
    png_max_text_chunk_bytes: int
    png_max_text_bytes: int
    image_max_metadata_segments: int
    image_max_metadata_bytes: int
    jpeg_max_trailing_bytes: int
    jpeg_max_images: int

    @classmethod
    def from_settings(cls, settings: Settings) -> IntegrityLimits:
        return cls(**{name: getattr(settings, name) for name in cls.__dataclass_fields__})


DEFAULT_LIMITS = IntegrityLimits.from_settings(Settings.model_construct())

_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_SOI, _EOI, _SOS, _COM = 0xD8, 0xD9, 0xDA, 0xFE
# Inside entropy-coded data 0xFF is followed by 0x00 (stuffing), a restart marker or more
# 0xFF (fill): anything else is the marker that ends the scan.
_ORIENTATION = 0x0112  # the EXIF tag
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


class _Metadata:
    """Metadata segments/chunks seen so far against the limits, and the walk's length."""

    def __init__(self, limits: IntegrityLimits, what: str) -> None:
        self.limits, self.what = limits, what
        self.steps = self.segments = self.bytes = 0

    def step(self) -> None:
        self.steps += 1
        if self.steps > self.limits.image_max_chunks:
            raise UndecodableImage(f"The {self.what} has more than {self.limits.image_max_chunks} segments")

    def add(self, length: int) -> None:
        self.segments += 1
        self.bytes += length
        if self.segments > self.limits.image_max_metadata_segments:
            limit = self.limits.image_max_metadata_segments
            raise UndecodableImage(f"The {self.what} has more than {limit} metadata segments")
        if self.bytes > self.limits.image_max_metadata_bytes:
            limit = self.limits.image_max_metadata_bytes
            raise UndecodableImage(f"The {self.what}'s metadata holds more than {limit} bytes")


@dataclass
class _Found:
    """Segments of the primary image that declare what follows it: XMP packets, the MPF index."""

    xmp: list[bytes] = field(default_factory=list)
    mpf: tuple[int, int] | None = None


def check_jpeg_structure(data: bytes | mmap.mmap, limits: IntegrityLimits = DEFAULT_LIMITS) -> Trailer | None:
    """Raise UndecodableImage unless the JPEG is whole: SOI, intact segments, scans, EOI, then
    further whole JPEGs (MPF: chained, or where its index puts them) and a trailer. The trailer
    the file declares (`jpeg_trailer`) is returned, to be cut off; an undeclared one may hold
    at most `jpeg_max_trailing_bytes` (kept), else TrailingData."""
    size, images = len(data), 1
    budget = _Metadata(limits, "JPEG")
    found = _Found()
    pos = _walk_jpeg(data, 0, budget, found)
    declared = mpf_images(data, found.mpf) if found.mpf else []
    while pos < size and images < limits.jpeg_max_images:
        start = pos if data[pos : pos + 3] == b"\xff\xd8\xff" else None
        if start is None:  # an image the MPF index places a little further on
            start = next((o for o, _ in declared if pos < o <= pos + limits.jpeg_max_trailing_bytes), None)
            if start is None or data[start : start + 3] != b"\xff\xd8\xff":
                break
        pos = _walk_jpeg(data, start, budget)
        images += 1
    if pos == size:
        return None
    trailer = declared_trailer(data, pos, found.xmp)
    undeclared = (trailer.start if trailer is not None else size) - pos
    if undeclared > limits.jpeg_max_trailing_bytes:
        what = "" if trailer is None else " that its metadata does not declare"
        raise TrailingData(
            f"The JPEG has {undeclared} bytes after its end-of-image marker{what}; "
            f"the limit is {limits.jpeg_max_trailing_bytes}"
        )
    if trailer is None:
        return None
    return Trailer(pos, trailer.kind, trailer.contents)  # the gap before it goes with it


def _walk_jpeg(data: bytes | mmap.mmap, pos: int, budget: _Metadata, found: _Found | None = None) -> int:
    """The position after the EOI of the JPEG that starts at `pos` (its XMP and MPF segments
    into `found`, if given)."""
    size = len(data)
    if data[pos : pos + 2] != b"\xff\xd8":
        raise UndecodableImage("The JPEG has no start-of-image marker")
    pos += 2
    scanned = False
    while True:
        if pos + 2 > size:
            raise UndecodableImage("The JPEG is truncated (no end-of-image marker)")
        if data[pos] != 0xFF:
            raise UndecodableImage(f"The JPEG is corrupt (no marker at byte {pos})")
        budget.step()
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker == _EOI:
            if not scanned:
                raise UndecodableImage("The JPEG has no image data")
            return pos + 2
        if marker == _SOI:
            raise UndecodableImage(f"The JPEG is corrupt (a second start-of-image at byte {pos})")
        if pos + 4 > size:
            raise UndecodableImage("The JPEG is truncated inside a segment header")
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        end = pos + 2 + length
        if length < 2 or end > size:
            raise UndecodableImage("The JPEG is truncated or corrupt (segment runs past the end)")
        if 0xE0 <= marker <= 0xEF or marker == _COM:
            budget.add(length - 2)
            if found is not None and marker in (0xE1, 0xE2):
                _declaration(data, marker, pos + 4, end, found)
        if marker == _SOS:
            scan_end = _SCAN_END.search(data, end)
            if scan_end is None:
                raise UndecodableImage("The JPEG is truncated (no end-of-image marker)")
            scanned = True
            end = scan_end.start()
        pos = end


def _declaration(data: bytes | mmap.mmap, marker: int, start: int, end: int, found: _Found) -> None:
    """Keep an APP1 XMP packet or the APP2 MPF index (payload data[start:end])."""
    if marker == 0xE1 and data[start : start + len(XMP_HEADER)] == XMP_HEADER:
        found.xmp.append(bytes(data[start + len(XMP_HEADER) : end]))
    elif marker == 0xE2 and found.mpf is None and data[start : start + 4] == MPF_HEADER:
        found.mpf = (start, end)


_IMAGE_CHUNKS = frozenset({b"VP8 ", b"VP8L"})
_STRUCTURE_CHUNKS = frozenset({b"ANIM", b"ALPH"})


def _riff_chunks(
    data: bytes | mmap.mmap, pos: int, end: int, budget: _Metadata
) -> list[tuple[bytes, int, int]]:
    """(type, data start, data length) of each chunk from `pos` to exactly `end`."""
    chunks = []
    while pos < end:
        if pos + 8 > end:
            raise UndecodableImage("The WebP is truncated or corrupt (inside a chunk header)")
        budget.step()
        kind = bytes(data[pos : pos + 4])
        length = int.from_bytes(data[pos + 4 : pos + 8], "little")
        following = pos + 8 + length + (length & 1)
        if following > end:
            raise UndecodableImage(
                f"The WebP is truncated or corrupt (chunk {kind.decode('latin-1')!r} runs past its end)"
            )
        chunks.append((kind, pos + 8, length))
        pos = following
    return chunks


def check_riff_structure(data: bytes | mmap.mmap, limits: IntegrityLimits = DEFAULT_LIMITS) -> None:
    """Raise UndecodableImage unless the WebP's RIFF chunks exactly cover the file (see the module)."""
    size = len(data)
    if size < 20 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise UndecodableImage("The WebP has no RIFF header")
    declared = int.from_bytes(data[4:8], "little") + 8
    if declared > size:
        raise UndecodableImage("The WebP is truncated (its RIFF size runs past the end)")
    if declared < size:
        raise UndecodableImage(f"The WebP has {size - declared} bytes of data after its end (RIFF size)")
    budget = _Metadata(limits, "WebP")
    chunks = _riff_chunks(data, 12, size, budget)
    first = chunks[0][0] if chunks else b""
    if first in _IMAGE_CHUNKS:
        if len(chunks) != 1:
            raise UndecodableImage("The WebP has data after its image (a simple WebP is one chunk)")
        return
    if first != b"VP8X":
        raise UndecodableImage("The WebP has no image chunk")
    stills = frames = 0
    for kind, start, length in chunks[1:]:
        if kind in _IMAGE_CHUNKS:
            stills += 1
        elif kind == b"ANMF":
            frames += 1
            if length < 16:
                raise UndecodableImage("The WebP is corrupt (an animation frame is too short)")
            frame = _riff_chunks(data, start + 16, start + length, budget)
            if sum(k in _IMAGE_CHUNKS for k, _, _ in frame) != 1:
                raise UndecodableImage("The WebP is corrupt (an animation frame holds no single image)")
            for k, _, n in frame:
                if k not in _IMAGE_CHUNKS and k not in _STRUCTURE_CHUNKS:
                    budget.add(n)
        elif kind == b"VP8X":
            raise UndecodableImage("The WebP is corrupt (a second VP8X chunk)")
        elif kind not in _STRUCTURE_CHUNKS:
            budget.add(length)  # ICCP, EXIF, XMP and unknown chunks
    if stills > 1 or stills + frames == 0:
        raise UndecodableImage("The WebP is corrupt (it needs exactly one image, or animation frames)")


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
        check_riff_structure(data, limits)
    elif fmt.pillow in ("HEIF", "AVIF"):
        check_bmff_structure(data)
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
    trailer = check_structure(data, fmt, limits)
    if fmt.name == "heic":
        enable_heif()
    fp = data if isinstance(data, mmap.mmap) else io.BytesIO(data)
    fp.seek(0)
    try:
        # An mmap is file enough for Pillow (read, seek, tell), but no `IO[bytes]` to typeshed.
        with Image.open(cast(IO[bytes], fp), formats=[fmt.pillow]) as im:
            width, height = im.size
            if width * height > max_pixels:
                raise TooManyPixels(
                    f"The image has {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
                )
            orientation = im.getexif().get(_ORIENTATION, 1)
            if fmt.pillow == "JPEG" and decode_check == "draft":
                im.draft(im.mode, (max(1, width // 8), max(1, height // 8)))
                im.load()
    except Image.DecompressionBombError:  # Pillow's own limit (2 x ~89 MP), far above ours
        raise TooManyPixels(f"The image has too many pixels; the limit is {max_pixels}") from None
    except UnidentifiedImageError:
        raise UndecodableImage(f"The image cannot be decoded as {fmt.pillow}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UndecodableImage(f"The image cannot be decoded ({exc})") from None
    if width < 1 or height < 1:
        raise UndecodableImage("The image has no pixels")
    swapped = orientation in (5, 6, 7, 8)  # transposed or rotated by 90 degrees
    return ImageInfo(width, height, *((height, width) if swapped else (width, height)), trailer)
