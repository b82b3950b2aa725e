"""Distinct real-photo JPEGs for the analyzer benchmark, generated once and cached.

`ensure_photos(n)`: n distinct JPEGs of 0.3-1 MB made from scikit-image's bundled photos
(astronaut, chelsea, coffee, rocket, ...): each a different random crop, mirror, scale
(long side about 900-2400 px) and noise seed, so no two files share bytes or pixels.
`ensure_face_photo()`: one 12 MP (4000x3000) JPEG of the astronaut photo upscaled with
mild noise, under the service's 5 MiB upload limit, with one frontal face of about
600 px. Files live in `bench/.work/analyzers/` and are reused while they still fit.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

WORK_DIR = Path(__file__).resolve().parent / ".work" / "analyzers"
VERSION = "v1"  # bump to regenerate every cached file
PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "camera",
)
MIN_BYTES, MAX_BYTES = 300_000, 1_000_000
FACE_SIZE = (4000, 3000)
FACE_MAX_BYTES = 4_800_000  # the service accepts up to 5 MiB (5,242,880 bytes)


@cache
def _photo(name: str) -> Image.Image:
    from skimage import data

    array = np.asarray(getattr(data, name)())
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return Image.fromarray(array[..., :3].astype(np.uint8), "RGB")


def _jpeg(image: Image.Image, noise_sigma: float, seed: int, quality: int) -> bytes:
    pixels = np.asarray(image, dtype=np.float32)
    rng = np.random.default_rng(seed)
    pixels = pixels + rng.normal(0.0, noise_sigma, pixels.shape).astype(np.float32)
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def make_photo(index: int) -> bytes:
    """Photo `index`: a crop/mirror/scale of one source photo, 0.3-1 MB of JPEG."""
    source = _photo(PHOTOS[index % len(PHOTOS)])
    rng = np.random.default_rng(1000 + index)
    # A crop of 60-100% of each side, at a random offset, mirrored for odd variants.
    fw, fh = rng.uniform(0.6, 1.0, size=2)
    cw, ch = max(64, round(source.width * fw)), max(64, round(source.height * fh))
    x0 = int(rng.integers(0, source.width - cw + 1))
    y0 = int(rng.integers(0, source.height - ch + 1))
    crop = source.crop((x0, y0, x0 + cw, y0 + ch))
    if (index // len(PHOTOS)) % 2:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    goal = float(rng.uniform(MIN_BYTES * 1.2, MAX_BYTES * 0.9))
    sigma = float(rng.uniform(3.0, 5.0))
    scale = float(rng.uniform(900, 2400)) / max(cw, ch)
    for _ in range(12):
        size = (max(64, round(cw * scale)), max(64, round(ch * scale)))
        data = _jpeg(crop.resize(size, Image.Resampling.BICUBIC), sigma, index, quality=90)
        if abs(len(data) - goal) <= 0.1 * goal and MIN_BYTES <= len(data) <= MAX_BYTES:
            return data
        scale *= (goal / len(data)) ** 0.5  # bytes grow about with the pixel count
    raise RuntimeError(f"photo {index}: could not land near {goal:.0f} bytes")


def _cached(path: Path, fits: tuple[int, int], make: Callable[[], bytes]) -> Path:
    low, high = fits
    if path.exists() and low <= path.stat().st_size <= high:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    data = make()
    Image.open(io.BytesIO(data)).verify()
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def ensure_photos(count: int, work_dir: Path = WORK_DIR) -> list[Path]:
    """`count` distinct cached JPEGs of 0.3-1 MB."""
    return [
        _cached(work_dir / f"photo-{VERSION}-{i:03d}.jpg", (MIN_BYTES, MAX_BYTES), lambda i=i: make_photo(i))
        for i in range(count)
    ]


def make_face_photo() -> bytes:
    """Astronaut upscaled to 4000x3000 (top 3/4 of the square photo), mild noise, < 4.8 MB."""
    source = _photo("astronaut")
    width, height = FACE_SIZE
    box = (0, 0, source.width, source.width * height / width)
    image = source.resize(FACE_SIZE, Image.Resampling.BICUBIC, box=box)
    for quality in (92, 90, 88, 85, 82, 80, 75):
        data = _jpeg(image, 4.0, 4000, quality)
        if len(data) <= FACE_MAX_BYTES:
            return data
    raise RuntimeError("the 12 MP face photo does not fit under the upload limit")


def ensure_face_photo(work_dir: Path = WORK_DIR) -> Path:
    """The cached 12 MP face JPEG."""
    return _cached(work_dir / f"face-12mp-{VERSION}.jpg", (1, FACE_MAX_BYTES), make_face_photo)


if __name__ == "__main__":
    for p in [*ensure_photos(40), ensure_face_photo()]:
        with Image.open(p) as im:
            print(f"{p.name}: {p.stat().st_size:>9,} bytes {im.width}x{im.height}")
