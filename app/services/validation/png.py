"""The PNG wholeness walk: one pass over every chunk of an upload, then the start of its image data.

- The signature, then IHDR (13 bytes) first; every chunk's length within the file, its
  type four ASCII letters, its CRC (zlib.crc32 over type and data) right; no unknown
  critical chunk.
- IDAT chunks contiguous; after them (the image data) only text, tIME and the APNG frame
  chunks (fcTL, fdAT), then an empty IEND that ends the file: nothing may follow it.
- Text chunks (tEXt, zTXt, iTXt) bounded in count, in bytes per chunk and in all, as
  Pillow's MAX_TEXT_CHUNK / MAX_TEXT_MEMORY bound what it holds. Compressed text is never
  inflated: its compressed size counts against the per-chunk limit, and it counts towards
  the total at the most it could inflate to (deflate expands at most 1032-fold, capped at
  the per-chunk limit). Before IDAT Pillow's header read inflates it anyway, within its own
  limits; after the image data it is read on every load, so there the worst case itself
  must fit the per-chunk limit: a zTXt bomb after IDAT is refused without inflating it.
- Other ancillary chunks (iCCP, eXIf, private ones, ...) count as metadata, bounded like
  a JPEG's APPn segments; the walk as a whole is bounded in chunks.
- The image data (the IDAT stream) is inflated up to `IMAGE_DATA_CHECK_BYTES` of rows,
  however large the image (bounded work, ~0.1 ms): it must be a zlib stream that yields the
  rows IHDR promises (all of them when they fit, Adam7 passes counted). CRCs cannot catch an
  empty, truncated or foreign stream written with right CRCs; this does, for those.
"""

from __future__ import annotations

import mmap
import struct
import zlib
from typing import TYPE_CHECKING

from app.core.errors import UndecodableImage

if TYPE_CHECKING:
    from app.services.validation.limits import IntegrityLimits

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CRITICAL = frozenset({b"IHDR", b"PLTE", b"IDAT", b"IEND"})
_TEXT = frozenset({b"tEXt", b"zTXt", b"iTXt"})
_FRAMES = frozenset({b"fcTL", b"fdAT"})
_AFTER_IMAGE = _TEXT | _FRAMES | {b"tIME", b"IEND"}
# The most deflate can expand its input (RFC 1951: a 258-byte match in ~2 bits per symbol).
DEFLATE_MAX_RATIO = 1032
IMAGE_DATA_CHECK_BYTES = 1 << 14  # inflate ran at ~160 MB/s here: ~0.1 ms
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_BEFORE, _IN_IDAT, _AFTER = 0, 1, 2


def _compressed(data: memoryview, kind: bytes, start: int, end: int) -> bool:
    """Whether a text chunk's data (data[start:end]) is compressed."""
    if kind != b"iTXt":
        return kind == b"zTXt"
    keyword_end = bytes(data[start : min(end, start + 80)]).find(b"\0")
    return keyword_end >= 0 and start + keyword_end + 1 < end and data[start + keyword_end + 1] != 0


class _Budget:
    """What the walk has seen so far, against the limits."""

    def __init__(self, limits: IntegrityLimits) -> None:
        self.limits = limits
        self.text_chunks = self.text_bytes = self.metadata_chunks = self.metadata_bytes = 0

    def text(self, kind: bytes, length: int, compressed: bool, after_image: bool) -> None:
        lim = self.limits
        self.text_chunks += 1
        if self.text_chunks > lim.png_max_text_chunks:
            raise UndecodableImage(f"The PNG has more than {lim.png_max_text_chunks} text chunks")
        if length > lim.png_max_text_chunk_bytes:
            limit = lim.png_max_text_chunk_bytes
            raise UndecodableImage(f"The PNG has a {length}-byte {kind.decode()} chunk; the limit is {limit}")
        charge = length
        if compressed:
            charge = length * DEFLATE_MAX_RATIO
            if after_image and charge > lim.png_max_text_chunk_bytes:
                raise UndecodableImage(
                    f"The PNG has compressed text after the image data that could inflate to {charge} "
                    f"bytes; the limit is {lim.png_max_text_chunk_bytes}"
                )
            charge = min(charge, lim.png_max_text_chunk_bytes)
        self.text_bytes += charge
        if self.text_bytes > lim.png_max_text_bytes:
            raise UndecodableImage(f"The PNG's text chunks hold more than {lim.png_max_text_bytes} bytes")

    def metadata(self, length: int) -> None:
        lim = self.limits
        self.metadata_chunks += 1
        self.metadata_bytes += length
        if self.metadata_chunks > lim.image_max_metadata_segments:
            raise UndecodableImage(
                f"The PNG has more than {lim.image_max_metadata_segments} ancillary chunks"
            )
        if self.metadata_bytes > lim.image_max_metadata_bytes:
            raise UndecodableImage(
                f"The PNG's ancillary chunks hold more than {lim.image_max_metadata_bytes} bytes"
            )


def check_png_structure(data: bytes | mmap.mmap, limits: IntegrityLimits) -> None:
    """Raise UndecodableImage unless the PNG is whole and within `limits` (see the module)."""
    with memoryview(data) as view:
        _walk(view, limits)


_HEAD = struct.Struct(">I4s")
_CRC = struct.Struct(">I")


def _walk(data: memoryview, limits: IntegrityLimits) -> None:
    size = len(data)
    if data[:16] != SIGNATURE + b"\0\0\0\x0dIHDR":
        raise UndecodableImage("The PNG has no signature and IHDR chunk")
    budget = _Budget(limits)
    pos, chunks, state, first_idat = 8, 0, _BEFORE, 0
    crc32, head, crc_at, max_chunks = zlib.crc32, _HEAD.unpack_from, _CRC.unpack_from, limits.image_max_chunks
    while True:
        if pos + 12 > size:
            raise UndecodableImage("The PNG is truncated (no IEND chunk)")
        length, kind = head(data, pos)
        end = pos + 12 + length
        if end > size:
            raise UndecodableImage(
                f"The PNG is truncated or corrupt (chunk {kind.decode('latin-1')!r} runs past the end)"
            )
        chunks += 1
        if chunks > max_chunks:
            raise UndecodableImage(f"The PNG has more than {max_chunks} chunks")
        if crc32(data[pos + 4 : end - 4]) != crc_at(data, end - 4)[0]:
            raise UndecodableImage(
                f"The PNG is corrupt (bad CRC in chunk {kind.decode('latin-1')!r} at byte {pos})"
            )
        if kind == b"IDAT":  # the hot path
            if state == _AFTER:
                raise UndecodableImage("The PNG is corrupt (IDAT chunks are not contiguous)")
            if state == _BEFORE:
                first_idat = pos
            state, pos = _IN_IDAT, end
            continue
        if not (kind.isalpha() and kind.isascii()):
            raise UndecodableImage(
                f"The PNG is corrupt (chunk type {kind.decode('latin-1')!r} at byte {pos})"
            )
        if kind == b"IHDR" and chunks > 1:
            raise UndecodableImage("The PNG is corrupt (a second IHDR chunk)")
        if state != _BEFORE:
            state = _AFTER
            if kind not in _AFTER_IMAGE:
                raise UndecodableImage(f"The PNG has a {kind.decode('latin-1')!r} chunk after the image data")
        if kind in _TEXT:
            budget.text(kind, length, _compressed(data, kind, pos + 8, end - 4), state == _AFTER)
        elif kind[0] & 0x20:  # ancillary (lower-case first letter)
            if kind not in _FRAMES:
                budget.metadata(length)
        elif kind not in _CRITICAL:
            raise UndecodableImage(f"The PNG has an unknown critical chunk {kind.decode('latin-1')!r}")
        elif kind == b"IEND":
            if state == _BEFORE:
                raise UndecodableImage("The PNG has no image data")
            if length:
                raise UndecodableImage("The PNG is corrupt (IEND is not empty)")
            if end != size:
                raise UndecodableImage(f"The PNG has {size - end} bytes of data after its end (IEND)")
            _check_image_data(data, first_idat)
            return
        pos = end


def _raw_size(width: int, height: int, depth: int, color: int, interlace: int) -> int | None:
    """Bytes of filtered rows the image data must inflate to (None: a header Pillow refuses)."""
    channels = _CHANNELS.get(color)
    if channels is None or interlace not in (0, 1):
        return None
    bits = depth * channels

    def rows(w: int, h: int) -> int:
        return h * (1 + (w * bits + 7) // 8) if w > 0 and h > 0 else 0

    if not interlace:
        return rows(width, height)
    return sum(rows((width - x + dx - 1) // dx, (height - y + dy - 1) // dy) for x, y, dx, dy in _ADAM7)


def _check_image_data(data: memoryview, pos: int) -> None:
    """Inflate the IDAT chunks from `pos` until `IMAGE_DATA_CHECK_BYTES` of rows (or all of them)."""
    width, height = struct.unpack_from(">II", data, 16)
    expected = _raw_size(width, height, data[24], data[25], data[28])
    if expected is None:
        return
    want = min(expected, IMAGE_DATA_CHECK_BYTES)
    inflater = zlib.decompressobj()
    produced = 0
    try:
        while produced < want and not inflater.eof:
            length, kind = _HEAD.unpack_from(data, pos)
            if kind != b"IDAT":
                break
            start, end = pos + 8, pos + 8 + length
            for piece in range(start, end, IMAGE_DATA_CHECK_BYTES):
                piece_end = min(end, piece + IMAGE_DATA_CHECK_BYTES)
                produced += len(inflater.decompress(data[piece:piece_end], want - produced))
                if produced >= want or inflater.eof:
                    break
            pos = end + 4
    except zlib.error as exc:
        raise UndecodableImage(f"The PNG's image data is corrupt ({exc})") from None
    if produced < want:
        raise UndecodableImage(
            f"The PNG's image data is truncated or corrupt ({produced} of {expected} bytes of rows)"
        )
