"""Image formats the service knows: magic bytes, MIME type, file extension, Pillow name."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from functools import cache

from app.core.errors import UnsupportedMediaType


@dataclass(frozen=True)
class ImageFormat:
    """One accepted image format."""

    name: str
    mime: str
    extension: str
    pillow: str


FORMATS: dict[str, ImageFormat] = {
    "jpeg": ImageFormat("jpeg", "image/jpeg", "jpg", "JPEG"),
    "png": ImageFormat("png", "image/png", "png", "PNG"),
    "webp": ImageFormat("webp", "image/webp", "webp", "WEBP"),
    "heic": ImageFormat("heic", "image/heic", "heic", "HEIF"),
}

BY_EXTENSION: dict[str, ImageFormat] = {fmt.extension: fmt for fmt in FORMATS.values()}

# The longest prefix sniff_format needs to decide.
SNIFF_BYTES = 12

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# ISO-BMFF `ftyp` major brands of HEIF images (HEVC-coded ones and the generic image brands).
_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
)


def sniff_format(head: bytes) -> ImageFormat | None:
    """The format whose magic bytes start `head`, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return FORMATS["jpeg"]
    if head.startswith(_PNG_SIGNATURE):
        return FORMATS["png"]
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return FORMATS["webp"]
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return FORMATS["heic"]
    return None


def accepted_format(head: bytes, allowed: Collection[str], what: str = "The file") -> ImageFormat:
    """The format of `head` if it is one of `allowed`, else UnsupportedMediaType (400)."""
    fmt = sniff_format(head)
    if fmt is None or fmt.name not in allowed:
        names = ", ".join(sorted(allowed)).upper()
        raise UnsupportedMediaType(f"{what} is not a supported image ({names})")
    return fmt


@cache
def enable_heif() -> None:
    """Teach Pillow to read HEIC/HEIF (pillow-heif), once per process."""
    from pillow_heif import register_heif_opener

    register_heif_opener()
