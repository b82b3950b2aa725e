"""The accounts domain's settings sections, cut from `Settings` in the composition root.

Field names are the settings' own (env var names in lower case), so each reads as its
setting; derived values (`login_untrusted_limit`, `admin_bootstrap_enabled`) are resolved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import SecretStr

from app.core.config import Settings
from app.core.redis_settings import RedisSettings


@dataclass(frozen=True)
class AccessSettings:
    """Who may call (`PrincipalResolver`): API keys, anonymous access, seed 003's ADMIN_TOKEN."""

    api_keys: tuple[str, ...]
    anonymous_allowed: bool
    admin_token: SecretStr | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessSettings:
        return cls(tuple(settings.api_keys), settings.anonymous_allowed, settings.admin_token)


@dataclass(frozen=True)
class DeviceCookieSettings:
    """The signed device cookie a login sets (LOGIN_DEVICE_COOKIE_*)."""

    name: str
    days: int
    samesite: Literal["strict", "lax"]
    secure: bool | None  # None: when the request came over HTTPS, or in production
    production: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> DeviceCookieSettings:
        return cls(
            settings.login_device_cookie_name,
            settings.login_device_cookie_days,
            settings.login_device_cookie_samesite,
            settings.login_device_cookie_secure,
            settings.environment == "production",
        )

    def secure_for(self, scheme: str) -> bool:
        """Whether the cookie is `Secure` on a request that came over `scheme`."""
        if self.secure is not None:
            return self.secure
        return scheme == "https" or self.production


@dataclass(frozen=True)
class AccountSettings:
    """Sign-up, sign-in and tokens (`AccountService`)."""

    redis: RedisSettings
    device_cookie: DeviceCookieSettings
    login_failures_before_delay: int
    login_failure_window_seconds: float
    login_max_delay_seconds: float
    login_untrusted_limit: int
    login_device_limit: int
    login_address_limit: int
    password_hash_concurrency: int
    password_hash_queue_limit: int
    password_hash_max_wait_seconds: float
    password_hash_nice: int
    password_min_length: int
    password_max_length: int
    admin_username: str | None
    admin_pw_hash: SecretStr | None
    admin_bootstrap_enabled: bool
    initial_credits: int
    token_purge_interval_seconds: float
    access_token_minutes: int
    refresh_token_days: int

    @classmethod
    def from_settings(cls, settings: Settings) -> AccountSettings:
        fields = {
            name: getattr(settings, name)
            for name in cls.__dataclass_fields__
            if name not in ("redis", "device_cookie")
        }
        return cls(
            redis=RedisSettings.from_settings(settings),
            device_cookie=DeviceCookieSettings.from_settings(settings),
            **fields,
        )
