"""app.services.images.perceptual: PDQ hashes of scikit-image photos stay close under
re-encoding, resizing and EXIF rotation and far between different photos; flat images hash at
low quality; bands and probes cover every hash within the promised distance."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from app.services.images.perceptual import (
    BANDS,
    MAX_DISTANCE,
    MIN_QUALITY,
    bands,
    distance,
    hash_image,
    hash_pixels,
    probe_radius,
    probes,
)


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


ASTRONAUT = Image.fromarray(data.astronaut())
COFFEE = Image.fromarray(data.coffee())


def test_reencodings_and_resizes_stay_close_and_other_photos_are_far(tmp_path: Path) -> None:
    original = hash_image(encoded(ASTRONAUT, "PNG"))
    assert original.quality >= MIN_QUALITY and len(original.hex) == 64
    low_quality = hash_image(encoded(ASTRONAUT, "JPEG", quality=40))
    path = tmp_path / "small.webp"
    path.write_bytes(encoded(ASTRONAUT.resize((200, 200)), "WEBP", quality=70))
    smaller = hash_image(path)
    assert distance(original.hex, low_quality.hex) <= 16
    assert distance(original.hex, smaller.hex) <= 16
    assert distance(original.hex, hash_image(encoded(COFFEE, "JPEG")).hex) > 64


def test_the_image_is_hashed_upright() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: shown turned 90 degrees clockwise
    stored = ASTRONAUT.transpose(Image.Transpose.ROTATE_90)
    tagged = hash_image(encoded(stored, "JPEG", exif=exif.tobytes(), quality=90))
    upright = hash_image(encoded(ASTRONAUT, "JPEG", quality=90))
    untagged = hash_image(encoded(stored, "JPEG", quality=90))
    assert distance(tagged.hex, upright.hex) <= 16
    assert distance(untagged.hex, upright.hex) > 64


def test_a_flat_image_hashes_at_low_quality() -> None:
    assert hash_pixels(Image.new("L", (256, 256), 128)).quality < MIN_QUALITY
    assert hash_pixels(Image.fromarray(np.asarray(ASTRONAUT))).quality >= MIN_QUALITY


def test_bands_split_the_hash_and_probes_find_every_hash_within_the_distance() -> None:
    a = hash_image(encoded(ASTRONAUT, "PNG")).hex
    assert len(bands(a)) == BANDS and all(0 <= band < 1 << 16 for band in bands(a))
    assert "".join(f"{band:04x}" for band in bands(a)) == a
    flipped = f"{int(a, 16) ^ sum(1 << (16 * i) for i in range(BANDS)) ^ (1 << 5):064x}"  # 17 bits
    assert distance(a, flipped) == BANDS + 1
    radius = probe_radius(distance(a, flipped))
    assert radius == 1
    assert any(theirs in probes(mine, radius) for mine, theirs in zip(bands(a), bands(flipped), strict=True))
    assert probe_radius(BANDS - 1) == 0 and probes(7, 0) == [7]
    with pytest.raises(ValueError):
        probe_radius(MAX_DISTANCE + 1)
