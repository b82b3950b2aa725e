"""The rate limits' settings section, cut from `Settings` in the composition root."""

from __future__ import annotations

from dataclasses import dataclass

from app.core.config import Settings
from app.core.redis_settings import RedisSettings


@dataclass(frozen=True)
class RateLimitSettings:
    """RATE_LIMITS_ENABLED, the limit of each route class (RATE_LIMIT_*), the shared Redis."""

    enabled: bool
    limits: dict[str, str]  # route class -> "<count>/<unit>"
    redis: RedisSettings

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimitSettings:
        limits = {
            "upload": settings.rate_limit_upload,
            "analyze": settings.rate_limit_analyze,
            "auth": settings.rate_limit_auth,
            "default": settings.rate_limit_default,
            "login": settings.rate_limit_login_username,
        }
        return cls(settings.rate_limits_enabled, limits, RedisSettings.from_settings(settings))
