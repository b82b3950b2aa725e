"""app.services.analysis.settings: perceptual reuse's section follows its env vars."""

from __future__ import annotations

import pytest

from app.core.config import Settings
from app.services.analysis.settings import ReuseSettings


def test_the_section_follows_its_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERCEPTUAL_REUSE_DISTANCE", "4")
    monkeypatch.setenv("PERCEPTUAL_REUSE_SCOPE", "any")
    monkeypatch.setenv("PERCEPTUAL_REUSE_MAX_CANDIDATES", "2")
    assert ReuseSettings.from_settings(Settings(_env_file=None)) == ReuseSettings(4, "any", 2)
