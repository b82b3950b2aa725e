"""Photos with faces of known size and place: the astronaut's face pasted onto scikit-image photos.

`scene(background, size, faces, fraction, seed)` builds an RGB photo of `size` from one of
scikit-image's bundled non-face photos (BACKGROUNDS, scaled to cover it) and pastes the
astronaut's head `faces` times, each scaled so that its face box (BlazeFace's box on the
512-px astronaut, ~100 px) is `fraction` of the photo's long side, at seeded random places
that do not overlap, blended in with a feathered ellipse. It returns the photo and the true
face boxes (x0, y0, x1, y1). `jpeg(image)` encodes it as a phone would (quality 90, mild
noise). NON_FACE lists bundled photos without a human face. Used by bench/face_range.py and
the face tests; everything is generated, nothing is downloaded.
"""

from __future__ import annotations

import io
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

BACKGROUNDS = ("coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")
NON_FACE = (
    *BACKGROUNDS,
    *("retina", "coins", "moon", "page", "text", "brick", "grass", "gravel", "colorwheel", "cell", "clock"),
)
# The astronaut's head in the 512-px photo, and the face box BlazeFace finds in it.
HEAD = (130, 20, 330, 260)
FACE = (172, 67, 277, 172)


@cache
def photo(name: str) -> Image.Image:
    """A bundled scikit-image photo as RGB."""
    from skimage import data

    array = np.asarray(getattr(data, name)())
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    return Image.fromarray(array[..., :3].astype(np.uint8), "RGB")


@cache
def _head() -> tuple[Image.Image, Image.Image]:
    head = photo("astronaut").crop(HEAD)
    mask = Image.new("L", head.size, 0)
    w, h = head.size
    ImageDraw.Draw(mask).ellipse((w * 0.08, h * 0.04, w * 0.92, h * 0.96), fill=255)
    return head, mask.filter(ImageFilter.GaussianBlur(w * 0.04))


def background(name: str, size: tuple[int, int]) -> Image.Image:
    """Photo `name` scaled to cover `size` and centre-cropped to it."""
    src = photo(name)
    w, h = size
    s = max(w / src.width, h / src.height)
    cw, ch = w / s, h / s
    x0, y0 = max(0.0, (src.width - cw) / 2), max(0.0, (src.height - ch) / 2)
    return src.resize(size, Image.Resampling.BICUBIC, box=(x0, y0, x0 + cw, y0 + ch))


def scene(
    name: str, size: tuple[int, int], faces: int, fraction: float, seed: int = 0
) -> tuple[Image.Image, list[tuple[float, float, float, float]]]:
    """Photo `name` at `size` with `faces` astronaut faces of `fraction` of the long side; boxes."""
    image = background(name, size)
    head, mask = _head()
    s = fraction * max(size) / (FACE[2] - FACE[0])
    hw, hh = round(head.width * s), round(head.height * s)
    head_s = head.resize((hw, hh), Image.Resampling.BICUBIC)
    mask_s = mask.resize((hw, hh), Image.Resampling.BILINEAR)
    rng = np.random.default_rng(seed)
    boxes: list[tuple[float, float, float, float]] = []
    placed: list[tuple[int, int]] = []
    for _ in range(faces):
        for _try in range(200):
            x = int(rng.integers(0, max(1, size[0] - hw)))
            y = int(rng.integers(0, max(1, size[1] - hh)))
            if all(abs(x - px) >= hw or abs(y - py) >= hh for px, py in placed):
                break
        else:
            raise ValueError(f"{faces} heads of {hw}x{hh} px do not fit in {size}")
        placed.append((x, y))
        image.paste(head_s, (x, y), mask_s)
        fx0, fy0 = (FACE[0] - HEAD[0]) * s + x, (FACE[1] - HEAD[1]) * s + y
        boxes.append((fx0, fy0, fx0 + (FACE[2] - FACE[0]) * s, fy0 + (FACE[3] - FACE[1]) * s))
    return image, boxes


def jpeg(
    image: Image.Image, quality: int = 90, sigma: float = 2.0, seed: int = 0, fmt: str = "JPEG"
) -> bytes:
    """`image` as JPEG bytes, with mild sensor-like noise; `fmt="HEIF"`: as a HEIC instead (512 px
    grid tiles and a 320 px thumbnail as an iPhone writes them; x265's ultrafast preset)."""
    px = np.asarray(image, np.float32)
    px = px + np.random.default_rng(seed).normal(0.0, sigma, px.shape).astype(np.float32)
    out = io.BytesIO()
    options: dict[str, object] = {}
    if fmt == "HEIF":
        from app.core.formats import enable_heif

        enable_heif()
        options = {"tile_size": 512, "thumbnails": [320], "enc_params": {"preset": "ultrafast"}}
    Image.fromarray(np.clip(px, 0, 255).astype(np.uint8), "RGB").save(out, fmt, quality=quality, **options)
    return out.getvalue()
