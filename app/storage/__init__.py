"""Storage backends behind small interfaces (local filesystem by default)."""

from app.storage.base import ImageStore, ResultStore
from app.storage.local import LocalImageStore, LocalResultStore
from app.storage.metadata import ImageMetadata, StoredImage

__all__ = [
    "ImageMetadata",
    "ImageStore",
    "LocalImageStore",
    "LocalResultStore",
    "ResultStore",
    "StoredImage",
]
