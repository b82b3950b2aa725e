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
    "avif": ImageFormat("avif", "image/avif", "avif", "AVIF"),
}

BY_EXTENSION: dict[str, ImageFormat] = {fmt.extension: fmt for fmt in FORMATS.values()}

# The longest prefix sniff_format needs to decide (an ISO-BMFF `ftyp` box's first brands).
SNIFF_BYTES = 32

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# ISO-BMFF `ftyp` brands: HEVC-coded HEIF, AV1-coded (AVIF), and the generic image brands,
# which name the codec only among the compatible brands that follow.
_HEVC_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_GENERIC_BRANDS = frozenset({b"mif1", b"msf1"})


def _bmff_format(head: bytes) -> ImageFormat | None:
    """HEIC or AVIF by the `ftyp` box's major brand; a generic major brand (mif1) is AVIF when
    the compatible brands within `head` name AV1 and not HEVC, else HEIC."""
    major = head[8:12]
    if major in _HEVC_BRANDS:
        return FORMATS["heic"]
    if major in _AVIF_BRANDS:
        return FORMATS["avif"]
    if major not in _GENERIC_BRANDS:
        return None
    box_end = min(len(head), int.from_bytes(head[:4], "big"))
    compatible = {head[i : i + 4] for i in range(16, box_end - 3, 4)}
    return FORMATS["avif"] if compatible & _AVIF_BRANDS and not compatible & _HEVC_BRANDS else FORMATS["heic"]


def sniff_format(head: bytes) -> ImageFormat | None:
    """The format whose magic bytes start `head`, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return FORMATS["jpeg"]
    if head.startswith(_PNG_SIGNATURE):
        return FORMATS["png"]
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return FORMATS["webp"]
    if head[4:8] == b"ftyp":
        return _bmff_format(head)
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
