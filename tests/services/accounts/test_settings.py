"""app.services.accounts.settings: the accounts sections read the same env vars as before."""

from __future__ import annotations

import pytest

from app.core.config import Settings
from app.services.accounts.settings import AccessSettings, AccountSettings, DeviceCookieSettings


def test_sections_follow_their_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEYS", "k1,k2")
    monkeypatch.setenv("ADMIN_TOKEN", "static-admin")
    monkeypatch.setenv("LOGIN_FAILURES_BEFORE_DELAY", "3")
    monkeypatch.setenv("PASSWORD_MIN_LENGTH", "12")
    monkeypatch.setenv("LOGIN_DEVICE_COOKIE_NAME", "dev")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    settings = Settings(_env_file=None)
    access = AccessSettings.from_settings(settings)
    assert access.api_keys == ("k1", "k2") and not access.anonymous_allowed
    assert access.admin_token is not None and access.admin_token.get_secret_value() == "static-admin"
    accounts = AccountSettings.from_settings(settings)
    assert accounts.login_failures_before_delay == 3
    assert accounts.login_untrusted_limit == 12  # derived: 4 x LOGIN_FAILURES_BEFORE_DELAY
    assert accounts.password_min_length == 12 and accounts.admin_bootstrap_enabled
    assert accounts.redis.redis_url == "redis://127.0.0.1:1/0"
    assert accounts.device_cookie.name == "dev"


def test_the_device_cookie_is_secure_over_https_or_in_production() -> None:
    cookie = DeviceCookieSettings.from_settings(Settings(_env_file=None))
    assert cookie.secure_for("https") and not cookie.secure_for("http")
    production = Settings(_env_file=None, environment="production", secret_key="x" * 32)
    assert DeviceCookieSettings.from_settings(production).secure_for("http")
    forced = Settings(
        _env_file=None, login_device_cookie_secure=False, environment="production", secret_key="x" * 32
    )
    assert not DeviceCookieSettings.from_settings(forced).secure_for("https")
