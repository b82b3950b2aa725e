"""Storage backends behind small interfaces (local filesystem by default)."""

from app.storage.base import ImageStore, ResultStore
from app.storage.local import LocalImageStore, LocalResultStore

__all__ = ["ImageStore", "LocalImageStore", "LocalResultStore", "ResultStore"]
