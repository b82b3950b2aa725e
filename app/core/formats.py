"""Image formats the service knows: magic bytes, MIME type, file extension, Pillow name."""

from __future__ import annotations

from dataclasses import dataclass


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
}

BY_EXTENSION: dict[str, ImageFormat] = {fmt.extension: fmt for fmt in FORMATS.values()}

# The longest prefix sniff_format needs to decide.
SNIFF_BYTES = 12

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def sniff_format(head: bytes) -> ImageFormat | None:
    """The format whose magic bytes start `head`, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return FORMATS["jpeg"]
    if head.startswith(_PNG_SIGNATURE):
        return FORMATS["png"]
    return None
