"""The servers the scale-out job engine's tests need: S3 (SeaweedFS) and PostgreSQL."""

from tests.storage.conftest import s3_server

__all__ = ["s3_server"]
