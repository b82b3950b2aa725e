"""Test JPEGs made from scikit-image's bundled photos, generated once and cached in bench/.work/.

`upload_image(size)`: "100k", "1m" or "5m", one photo scaled with mild noise until its JPEG
lands in a byte window. `distinct_photos(n)`: n different 0.3-1 MB JPEGs (a random crop,
mirror, scale and noise of eight source photos), for cache misses. `face_photo()`: the
astronaut at 4000x3000 (12 MP, one frontal face of about 600 px), under the 5 MiB limit.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

WORK_DIR = Path(__file__).resolve().parent / ".work"
SOURCES = "astronaut chelsea coffee rocket immunohistochemistry hubble_deep_field retina camera".split()
UPLOADS = {  # size -> (source photo, smallest and largest byte count)
    "100k": ("astronaut", 95_000, 105_000),
    "1m": ("chelsea", 950_000, 1_050_000),
    "5m": ("coffee", 4_800_000, 5_000_000),
}
PHOTO_BYTES = (300_000, 1_000_000)
FACE_MAX_BYTES = 4_800_000  # the service accepts up to 5 MiB


@cache
def _photo(name: str) -> Image.Image:
    from skimage import data

    array = np.asarray(getattr(data, name)())
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return Image.fromarray(array[..., :3].astype(np.uint8), "RGB")


def _jpeg(image: Image.Image, sigma: float, seed: int, quality: int) -> bytes:
    pixels = np.asarray(image, dtype=np.float32)
    pixels = pixels + np.random.default_rng(seed).normal(0.0, sigma, pixels.shape).astype(np.float32)
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def _fit(image: Image.Image, scale: float, low: float, high: float, **jpeg) -> bytes:
    """Secant steps on the scale factor (bytes grow about with the pixel count) into [low, high]."""
    for _ in range(12):
        size = (max(64, round(image.width * scale)), max(64, round(image.height * scale)))
        data = _jpeg(image.resize(size, Image.Resampling.BICUBIC), **jpeg)
        if low <= len(data) <= high:
            return data
        scale *= ((low + high) / 2 / len(data)) ** 0.5
    raise RuntimeError(f"could not bring a JPEG into [{low:,.0f}, {high:,.0f}] bytes")


def _cached(name: str, low: int, high: int, make: Callable[[], bytes]) -> Path:
    path = WORK_DIR / name
    if not (path.exists() and low <= path.stat().st_size <= high):
        data = make()
        Image.open(io.BytesIO(data)).verify()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".tmp").write_bytes(data)
        path.with_suffix(".tmp").replace(path)
    return path


def upload_image(size: str) -> Path:
    """The upload test image for `size` ("100k", "1m", "5m")."""
    source, low, high = UPLOADS[size]

    def make() -> bytes:
        return _fit(_photo(source), 1.0, low, high, sigma=6.0, seed=12345, quality=95)

    return _cached(f"photo-{size}.jpg", low, high, make)


def _distinct(index: int) -> bytes:
    source = _photo(SOURCES[index % len(SOURCES)])
    rng = np.random.default_rng(1000 + index)
    fw, fh = rng.uniform(0.6, 1.0, size=2)  # a crop of 60-100% of each side
    cw, ch = max(64, round(source.width * fw)), max(64, round(source.height * fh))
    x0 = int(rng.integers(0, source.width - cw + 1))
    y0 = int(rng.integers(0, source.height - ch + 1))
    crop = source.crop((x0, y0, x0 + cw, y0 + ch))
    if (index // len(SOURCES)) % 2:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    goal = float(rng.uniform(PHOTO_BYTES[0] * 1.2, PHOTO_BYTES[1] * 0.9))
    sigma = float(rng.uniform(3.0, 5.0))
    scale = float(rng.uniform(900, 2400)) / max(cw, ch)  # long side 900-2400 px
    return _fit(crop, scale, goal * 0.9, goal * 1.1, sigma=sigma, seed=index, quality=90)


def distinct_photos(count: int) -> list[Path]:
    """`count` distinct JPEGs of 0.3-1 MB: no two share bytes or pixels."""
    return [_cached(f"photos/{i:03d}.jpg", *PHOTO_BYTES, lambda i=i: _distinct(i)) for i in range(count)]


def _face() -> bytes:
    source = _photo("astronaut")
    image = source.resize(
        (4000, 3000), Image.Resampling.BICUBIC, box=(0, 0, source.width, source.width * 0.75)
    )
    for quality in (92, 90, 88, 85, 82, 80, 75):
        data = _jpeg(image, 4.0, 4000, quality)
        if len(data) <= FACE_MAX_BYTES:
            return data
    raise RuntimeError("the 12 MP face photo does not fit under the upload limit")


def face_photo() -> Path:
    """The 12 MP JPEG with one face."""
    return _cached("face-12mp.jpg", 1, FACE_MAX_BYTES, _face)


if __name__ == "__main__":
    for p in [*(upload_image(s) for s in UPLOADS), *distinct_photos(40), face_photo()]:
        with Image.open(p) as im:
            print(f"{p.relative_to(WORK_DIR)}: {p.stat().st_size:>9,} bytes {im.width}x{im.height}")
