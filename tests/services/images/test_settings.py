"""app.services.images.settings: the ingest section reads the same env vars as before."""

from __future__ import annotations

import pytest

from app.core.config import Settings
from app.services.images.settings import IngestSettings


def test_the_section_follows_its_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_UPLOAD_BYTES", "5000")
    monkeypatch.setenv("MAX_MULTIPART_OVERHEAD_BYTES", "2048")
    monkeypatch.setenv("MAX_DECLARED_TRAILER_BYTES", "1000")
    monkeypatch.setenv("ALLOWED_FORMATS", "jpeg,png")
    monkeypatch.setenv("URL_FETCH_MAX_REDIRECTS", "1")
    monkeypatch.setenv("PNG_MAX_TEXT_CHUNKS", "9")
    monkeypatch.setenv("UPLOAD_DECODE_CHECK", "draft")
    ingest = IngestSettings.from_settings(Settings(_env_file=None))
    assert ingest.max_request_body_bytes == 5000 + 1000 + 2048
    assert ingest.allowed_formats == frozenset({"jpeg", "png"})
    assert ingest.url_policy.max_redirects == 1 and ingest.url_policy.max_bytes == 5000
    assert ingest.integrity.png_max_text_chunks == 9 and ingest.upload_decode_check == "draft"
