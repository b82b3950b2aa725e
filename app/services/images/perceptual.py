"""Perceptual hashes of uploads (PDQ, Meta's near-duplicate hash, via `pdqhash`) and their bands.

The hash is of the upright image's luma: a JPEG is decoded reduced (libjpeg's DCT scaling,
`draft`), other formats whole; PDQ itself box-filters the image to 64 x 64. A hash of a flat
or nearly flat image (PDQ quality below `MIN_QUALITY`, the threshold Meta's documentation
gives) says little and is not kept.
PDQ's cost grows with the cube of the side it is given (~2.6 ms at 256 px, ~85 ms at 1024 px),
so it is given the image box-filtered to `HASH_SIDE` x `HASH_SIDE`: on the photos of
`bench/perceptual.py` this matches the full-resolution hash on re-encodings and resizes.

The 256 bits are stored as 64 hex digits, and as `BANDS` 16-bit integers, each indexed for
exact match: two hashes within Hamming distance d < BANDS agree exactly on at least one band
(pigeonhole), and within d < 2 * BANDS agree on one band up to one bit, so a lookup probes each
band's index for the value and (for larger d) its 16 one-bit neighbours, then checks the full
distance of the few candidates.
"""

from __future__ import annotations

import io
import mmap
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

import numpy as np
import pdqhash
from PIL import Image, ImageOps

from app.analyzers.imaging import to_rgb
from app.core.formats import enable_heif

BITS = 256
BANDS = 16
BAND_BITS = BITS // BANDS
MAX_DISTANCE = 2 * BANDS - 1  # the largest threshold the band probes can guarantee
MIN_QUALITY = 50
HASH_SIDE = 256


@dataclass(frozen=True)
class PerceptualHash:
    """A PDQ hash (64 hex digits) and its quality (0-100)."""

    hex: str
    quality: int

    @property
    def bands(self) -> tuple[int, ...]:
        """The hash as `BANDS` integers of `BAND_BITS` bits, most significant first."""
        return bands(self.hex)


def bands(hex_hash: str) -> tuple[int, ...]:
    """A 64-hex-digit hash as `BANDS` integers of `BAND_BITS` bits."""
    step = BAND_BITS // 4
    return tuple(int(hex_hash[i : i + step], 16) for i in range(0, len(hex_hash), step))


def distance(a: str, b: str) -> int:
    """Hamming distance between two hex hashes of the same length."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def probes(band: int, radius: int) -> list[int]:
    """The values of one band within Hamming distance `radius` (0 or 1) of `band`."""
    values = [band]
    if radius >= 1:
        values += [band ^ (1 << bit) for bit in range(BAND_BITS)]
    return values


def probe_radius(max_distance: int) -> int:
    """How far from each band's value a lookup within `max_distance` must probe (0 or 1)."""
    if not 0 <= max_distance <= MAX_DISTANCE:
        raise ValueError(f"a distance must be within 0-{MAX_DISTANCE}")
    return 0 if max_distance < BANDS else 1


def hash_pixels(image: Image.Image) -> PerceptualHash:
    """The PDQ hash of a decoded image (any mode; its luma is hashed)."""
    gray = np.asarray(image if image.mode == "L" else image.convert("L"))
    vector, quality = pdqhash.compute(np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2)))
    packed = np.packbits(np.asarray(vector, dtype=np.uint8))
    return PerceptualHash(packed.tobytes().hex(), int(quality))


def hash_image(source: mmap.mmap | bytes | Path, pillow_format: str | None = None) -> PerceptualHash:
    """The PDQ hash of an encoded image (an mmap, bytes or a path), decoded reduced and upright.
    Raises what Pillow raises for bytes it cannot decode (callers validated them first)."""
    if isinstance(source, Path):
        fp: IO[bytes] = open(source, "rb")  # noqa: SIM115 (closed below)
    elif isinstance(source, mmap.mmap):
        source.seek(0)
        fp = cast(IO[bytes], source)  # an mmap is file enough for Pillow
    else:
        fp = io.BytesIO(source)
    enable_heif()
    try:
        with Image.open(fp, formats=None if pillow_format is None else [pillow_format]) as im:
            if im.format == "JPEG":
                im.draft("L", (HASH_SIDE, HASH_SIDE))  # libjpeg scales by 1/2, 1/4, 1/8 down to >= this
            im.load()
            image = ImageOps.exif_transpose(im)
        if image.mode not in ("L", "RGB"):
            image = to_rgb(image)
        return hash_pixels(image.convert("L").resize((HASH_SIDE, HASH_SIDE), Image.Resampling.BOX))
    finally:
        if isinstance(source, Path):
            fp.close()
