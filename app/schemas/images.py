"""Image listing schema (the metadata itself is `app.storage.metadata.ImageMetadata`)."""

from __future__ import annotations

from pydantic import BaseModel

from app.storage.metadata import ImageMetadata


class ImagePage(BaseModel):
    """One page of images, newest first."""

    total: int
    limit: int
    offset: int
    items: list[ImageMetadata]
