"""app.services.readiness_settings: readiness's section follows its env vars."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.config import Settings
from app.services.readiness_settings import ReadinessSettings


def test_the_section_follows_its_env_vars(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MIN_FREE_DISK_BYTES", "1234")
    monkeypatch.setenv("REDIS_OUTAGE_POLICY", "fail-closed")
    section = ReadinessSettings.from_settings(Settings(_env_file=None))
    assert (section.data_dir, section.images_dir, section.analysis_dir) == (
        tmp_path,
        tmp_path / "images",
        tmp_path / "analysis",
    )
    assert section.database == f"sqlite+aiosqlite:///{tmp_path / 'service.db'}"
    assert (section.min_free_disk_bytes, section.redis_outage_policy) == (1234, "fail-closed")
