"""Rate limits (the `limits` library, moving window): per caller and per client address, per
route class, in memory by default or in Redis (`REDIS_URL`, shared by every worker).

Route classes: `upload`, `analyze` (computations only: a cached result is not counted),
`auth` (login and registration; logins are also limited per username, against password
guessing from many addresses), `default` (everything else). Each decision comes with the
IETF draft's `RateLimit` / `RateLimit-Policy` header values; a refusal is 429 with
`Retry-After`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from app.core import metrics
from app.core.config import Settings
from app.core.errors import TooManyRequests

logger = logging.getLogger("app.rate_limits")

ROUTE_CLASSES = ("upload", "analyze", "auth", "login", "default")


@dataclass(frozen=True)
class Quota:
    """Where a caller stands against one limit."""

    name: str
    limit: int
    window: int
    remaining: int
    reset: int

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit": f'"{self.name}";r={self.remaining};t={self.reset}',
            "RateLimit-Policy": f'"{self.name}";q={self.limit};w={self.window}',
        }


class RateLimits:
    """Moving-window limits per (route class, caller) and (route class, address)."""

    def __init__(self, settings: Settings) -> None:
        uri = f"async+{settings.redis_url}" if settings.redis_url else "async+memory://"
        self.storage = storage_from_string(uri)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.enabled = settings.rate_limits_enabled
        self.items: dict[str, RateLimitItem] = {
            "upload": parse(settings.rate_limit_upload),
            "analyze": parse(settings.rate_limit_analyze),
            "auth": parse(settings.rate_limit_auth),
            "default": parse(settings.rate_limit_default),
            "login": parse(settings.rate_limit_login_username),
        }

    async def hit(self, route_class: str, *keys: str) -> Quota | None:
        """Count one request against each key's window; TooManyRequests (429) if any is full.
        The quota of the tightest key, for the response headers (None when disabled)."""
        if not self.enabled:
            return None
        item = self.items[route_class]
        tightest: Quota | None = None
        for key in keys:
            allowed = await self.limiter.hit(item, route_class, key)
            stats = await self.limiter.get_window_stats(item, route_class, key)
            window = item.get_expiry()
            reset = max(0, math.ceil(stats.reset_time - time.time()))
            quota = Quota(route_class, item.amount, window, stats.remaining, reset)
            if not allowed:
                metrics.RATE_LIMITED.labels(route_class).inc()
                raise TooManyRequests(
                    f"Rate limit of {item.amount} per {window} s reached for {route_class} requests",
                    headers={"Retry-After": str(max(1, reset)), **quota.headers()},
                )
            if tightest is None or quota.remaining < tightest.remaining:
                tightest = quota
        return tightest
