"""app.services.rate_limit_settings: the rate limits' section follows its env vars."""

from __future__ import annotations

import pytest

from app.core.config import Settings
from app.services.rate_limit_settings import RateLimitSettings


def test_the_section_follows_its_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATE_LIMIT_UPLOAD", "5/second")
    monkeypatch.setenv("RATE_LIMIT_LOGIN_USERNAME", "2/hour")
    monkeypatch.setenv("REDIS_URL", "redis://r:6379/1")
    monkeypatch.setenv("REDIS_OUTAGE_POLICY", "fail-closed")
    monkeypatch.setenv("RATE_LIMITS_ENABLED", "false")
    section = RateLimitSettings.from_settings(Settings(_env_file=None))
    assert not section.enabled
    assert section.limits["upload"] == "5/second" and section.limits["login"] == "2/hour"
    assert set(section.limits) == {"upload", "analyze", "auth", "login", "default"}
    assert (section.redis.redis_url, section.redis.redis_outage_policy) == ("redis://r:6379/1", "fail-closed")
