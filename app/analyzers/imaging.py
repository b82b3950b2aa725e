"""Decoding stored images for analyzers: EXIF orientation applied, any mode to RGB.

Every analyzer that looks at pixels starts here, so that an iPhone photo saved with
EXIF orientation 6 is analyzed upright, and grayscale, palette or RGBA images all arrive
as plain RGB (transparent areas on white).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from PIL import Image, ImageOps

from app.core.errors import UndecodableImage
from app.core.formats import enable_heif


def _open_upright(
    source: Path | bytes, draft_mode: str, draft_size: tuple[int, int] | None, long_side: int | None = None
) -> tuple[Image.Image, float]:
    """Decode `source` and apply its EXIF orientation, reduced where the format allows: JPEGs
    through `draft(draft_mode, size)` (or a size whose long side is at least `long_side`), a
    HEIC through the smallest embedded thumbnail at least that large (pillow-heif's `draft`),
    if it holds one. Also the reduction (original pixels per decoded pixel)."""
    enable_heif()
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        width = image.width
        if image.format in ("JPEG", "HEIF"):
            if long_side is not None:
                s = min(1.0, long_side / max(image.size))
                draft_size = (math.ceil(image.width * s), math.ceil(image.height * s))
            if draft_size is not None or image.format == "JPEG":
                image.draft(draft_mode, draft_size or image.size)
        image.load()
        k = width / image.width
        if image.format == "JPEG":  # a draft scales by 1/k, k in {1, 2, 4, 8}: pixel i is [i k, (i + 1) k)
            k = float(max(1, round(k)))
        ImageOps.exif_transpose(image, in_place=True)  # no copy of an upright image
        return image, k
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise UndecodableImage(f"The image cannot be decoded ({exc})") from None


def load_rgb(source: Path | bytes, min_size: tuple[int, int] | None = None) -> Image.Image:
    """Decode `source` (a path or bytes) to an upright RGB image.

    `min_size` (width, height) lets JPEG decoding use `draft()` to scale down by up to 8x
    while decoding, as long as the result stays at least that large (in the stored
    orientation); it is the cheap path to a thumbnail of a 12 MP photo.
    """
    return to_rgb(_open_upright(source, "RGB", min_size)[0])


def load_rgb_reduced(source: Path | bytes, long_side: int) -> tuple[Image.Image, float]:
    """Decode `source` to an upright RGB image, a JPEG reduced while decoding (draft, by 2, 4
    or 8) as long as its long side stays at least `long_side`; and the reduction factor
    (original pixels per decoded pixel, 1.0 when not reduced). Face models see a few hundred
    pixels at most: a 12 MP photo decodes 3-4x faster at 1/4."""
    image, k = _open_upright(source, "RGB", None, long_side)
    return to_rgb(image), k


def load_gray(source: Path | bytes) -> Image.Image:
    """Decode `source` to an upright 8-bit grayscale image.

    A colour JPEG is decoded straight to its luma plane (`draft("L")`: no chroma IDCT,
    upsampling or colour conversion), 2-3x faster for a 12 MP photo; for analyzers that
    only look at intensity (face detection and landmarks).
    """
    return to_gray(_open_upright(source, "L", None)[0])


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB; transparency is composited on white."""
    if image.mode == "RGB":
        return image
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grayscale: scale to 8 bits before RGB.
        image = image.point(lambda v: v / 256).convert("L")
    return image.convert("RGB")


def to_gray(image: Image.Image) -> Image.Image:
    """Any Pillow mode to L, through `to_rgb` where there is transparency or a palette."""
    if image.mode == "L":
        return image
    return (image if image.mode == "RGB" else to_rgb(image)).convert("L")
