"""Real test JPEGs for the benchmark: scikit-image photos, scaled up, mild noise, cached.

Each target is a byte-size window; the photo is resized (a continuous knob, searched by
bisection) at a fixed JPEG quality until the encoded file lands inside the window. The
files are cached in `bench/.work/` and reused while they still fit their window.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

WORK_DIR = Path(__file__).resolve().parent / ".work"
SERVICE_LIMIT = 5 * 1024 * 1024  # MAX_UPLOAD_BYTES default: 5,242,880


@dataclass(frozen=True)
class Target:
    """One test image: a name, a scikit-image photo and the byte-size window to land in."""

    name: str
    photo: str
    low: int
    high: int
    quality: int = 95
    noise_sigma: float = 6.0


TARGETS: dict[str, Target] = {
    "100k": Target("100k", "astronaut", 95_000, 105_000),
    "1m": Target("1m", "chelsea", 950_000, 1_050_000),
    "5m": Target("5m", "coffee", 4_800_000, 5_000_000),
}


def _photo(name: str) -> Image.Image:
    from skimage import data

    array = getattr(data, name)()
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return Image.fromarray(array[..., :3].astype(np.uint8), "RGB")


def _encode(photo: Image.Image, scale: float, target: Target) -> bytes:
    width = max(16, round(photo.width * scale))
    height = max(16, round(photo.height * scale))
    resized = np.asarray(photo.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
    rng = np.random.default_rng(12345)  # same noise every time: reproducible files
    noisy = resized + rng.normal(0.0, target.noise_sigma, resized.shape).astype(np.float32)
    image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=target.quality)
    return out.getvalue()


def generate(target: Target) -> bytes:
    """A JPEG whose size lies in the target's window (secant steps on the scale factor)."""
    photo = _photo(target.photo)
    goal = (target.low + target.high) / 2
    scale = 1.0
    for _ in range(12):
        data = _encode(photo, scale, target)
        if target.low <= len(data) <= target.high:
            return data
        # Size grows roughly with the pixel count, i.e. with the square of the scale.
        scale *= (goal / len(data)) ** 0.5
    raise RuntimeError(f"could not land {target.name} in [{target.low}, {target.high}] bytes")


def ensure_image(name: str, work_dir: Path = WORK_DIR) -> Path:
    """The cached JPEG for `name` ("100k", "1m", "5m"), generated on first use."""
    target = TARGETS[name]
    path = work_dir / f"photo-{target.name}.jpg"
    if path.exists() and target.low <= path.stat().st_size <= target.high:
        return path
    work_dir.mkdir(parents=True, exist_ok=True)
    data = generate(target)
    assert len(data) < SERVICE_LIMIT, f"{path.name} is {len(data)} bytes, over the service limit"
    Image.open(io.BytesIO(data)).verify()
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


if __name__ == "__main__":
    for key in TARGETS:
        p = ensure_image(key)
        with Image.open(p) as im:
            print(f"{p}: {p.stat().st_size} bytes, {im.width}x{im.height}")
