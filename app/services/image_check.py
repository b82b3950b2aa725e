"""Cheap decode checks with Pillow: header, pixel limit, and a fast full pass.

JPEG: a draft decode at 1/8 scale reads the whole entropy-coded stream (so truncation
shows) for a fraction of a full decode. PNG: `verify()` walks every chunk and checks
its CRC without inflating pixels.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from app.core.errors import TooManyPixels, UndecodableImage
from app.core.formats import ImageFormat


def inspect_image(path: Path, fmt: ImageFormat, max_pixels: int) -> tuple[int, int]:
    """(width, height) of a stored upload, after checking it really decodes as `fmt`."""
    try:
        with Image.open(path, formats=[fmt.pillow]) as im:
            width, height = im.size
            if width * height > max_pixels:
                raise TooManyPixels(
                    f"The image has {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
                )
            if fmt.pillow == "JPEG":
                im.draft(im.mode, (max(1, width // 8), max(1, height // 8)))
                im.load()
            else:
                im.verify()
    except Image.DecompressionBombError as exc:
        raise TooManyPixels(f"The image has too many pixels: {exc}") from None
    except UnidentifiedImageError:
        raise UndecodableImage(f"The image cannot be decoded as {fmt.pillow}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Never echo server paths back to the client.
        reason = str(exc).replace(str(path), "upload")
        raise UndecodableImage(f"The image cannot be decoded ({reason})") from None
    if width < 1 or height < 1:
        raise UndecodableImage("The image has no pixels")
    return width, height
