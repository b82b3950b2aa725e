"""The Redis connection that rate limits and login counters share (a section of `Settings`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from app.core.config import Settings


@dataclass(frozen=True)
class RedisSettings:
    """REDIS_URL (None: counters in memory), its timeout and what an outage does."""

    redis_url: str | None
    redis_timeout_seconds: float
    redis_outage_policy: Literal["fail-open", "fail-closed"]

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisSettings:
        return cls(settings.redis_url, settings.redis_timeout_seconds, settings.redis_outage_policy)
