"""Fixtures of the scale-out tests: the live S3 server (shared with tests/storage)."""

from tests.storage.conftest import s3_server  # noqa: F401
