"""The WebP structure walk: the RIFF size covers exactly the file; every chunk (padded to
even) within it; one image (VP8/VP8L, or ANMF frames after VP8X); ICCP/EXIF/XMP and unknown
chunks bounded as metadata."""

from __future__ import annotations

import mmap

from app.core.errors import UndecodableImage
from app.services.validation.limits import IntegrityLimits, MetadataBudget
from app.services.validation.settings import DEFAULT_LIMITS

_IMAGE_CHUNKS = frozenset({b"VP8 ", b"VP8L"})
_STRUCTURE_CHUNKS = frozenset({b"ANIM", b"ALPH"})


def _riff_chunks(
    data: bytes | mmap.mmap, pos: int, end: int, budget: MetadataBudget
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


def check_webp_structure(data: bytes | mmap.mmap, limits: IntegrityLimits = DEFAULT_LIMITS) -> None:
    """Raise UndecodableImage unless the WebP's RIFF chunks exactly cover the file (see the module)."""
    size = len(data)
    if size < 20 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise UndecodableImage("The WebP has no RIFF header")
    declared = int.from_bytes(data[4:8], "little") + 8
    if declared > size:
        raise UndecodableImage("The WebP is truncated (its RIFF size runs past the end)")
    if declared < size:
        raise UndecodableImage(f"The WebP has {size - declared} bytes of data after its end (RIFF size)")
    budget = MetadataBudget(limits, "WebP")
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
