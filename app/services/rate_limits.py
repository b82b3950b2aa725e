"""Rate limits (the `limits` library, moving window): per caller and per client address, per
route class, in memory by default or in Redis (`REDIS_URL`, shared by every worker).

Route classes: `upload`, `analyze` (computations only: a cached result is not counted),
`auth` (login and registration; logins are also limited per username, against password
guessing from many addresses), `default` (everything else). Each decision comes with the
IETF draft's `RateLimit` / `RateLimit-Policy` header values; a refusal is 429 with
`Retry-After`.

Redis down or slower than `REDIS_TIMEOUT_SECONDS` (one bound for all of a request's calls):
`REDIS_OUTAGE_POLICY=fail-open` serves the request unlimited, counts
`dependency_errors_total{dependency="redis",use="rate_limit"}` and logs a warning at most every
10 s; `fail-closed` answers 503 `rate_limiter_unavailable` with `Retry-After`. After a failure
Redis is left alone for a second (requests meanwhile take the policy at once, without waiting
for a timeout), then tried again: it is used again as soon as it answers, without a restart.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import cast

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.storage import Storage as AsyncStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from app.core import metrics
from app.core.errors import RateLimiterUnavailable, TooManyRequests
from app.services.rate_limit_settings import RateLimitSettings

logger = logging.getLogger("app.rate_limits")

ROUTE_CLASSES = ("upload", "analyze", "auth", "login", "default")
WARN_EVERY_SECONDS = 10.0
RETRY_AFTER_FAILURE_SECONDS = 1.0
# What a Redis outage looks like from here (limits wraps the client's errors in StorageError).
OUTAGE_ERRORS = (StorageError, OSError, TimeoutError)


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

    def __init__(self, settings: RateLimitSettings) -> None:
        redis = settings.redis
        self.redis = redis.redis_url is not None
        self.timeout = redis.redis_timeout_seconds
        self.fail_open = redis.redis_outage_policy == "fail-open"
        self._down_until = 0.0  # monotonic time before which Redis is not tried again
        self._warned_at = -math.inf
        # In memory, `_hit` counts through `hit_now` directly; Redis goes through the library.
        self.memory: MovingWindowMemory | None = None
        if redis.redis_url:
            timeouts = {"connect_timeout": self.timeout, "stream_timeout": self.timeout}
            storage = storage_from_string(f"async+{redis.redis_url}", wrap_exceptions=True, **timeouts)
        else:
            storage = self.memory = MovingWindowMemory()
        # An "async+" URL gives an asyncio storage (the factory is typed as giving either kind).
        self.storage = cast(AsyncStorage, storage)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.enabled = settings.enabled
        self.items: dict[str, RateLimitItem] = {name: parse(limit) for name, limit in settings.limits.items()}
        # Each class's storage key around the caller's: `item.key_for(route_class, key)`, built
        # once (the library joins five strings per call).
        self._key_parts: dict[str, tuple[str, str]] = {}
        for name, item in self.items.items():
            before, _, after = item.key_for(name, "\0").partition("\0")
            self._key_parts[name] = (before, after)

    async def hit(self, route_class: str, *keys: str) -> Quota | None:
        """Count one request against each key's window; TooManyRequests (429) if any is full.
        The quota of the tightest key, for the response headers (None when disabled)."""
        if not self.enabled:
            return None
        if not self.redis:
            return await self._hit(route_class, keys)
        if time.monotonic() < self._down_until:
            self._outage(None)
            return None
        try:
            async with asyncio.timeout(self.timeout):
                return await self._hit(route_class, keys)
        except OUTAGE_ERRORS as exc:
            self._down_until = time.monotonic() + RETRY_AFTER_FAILURE_SECONDS
            self._outage(exc)
            return None

    def _outage(self, exc: BaseException | None) -> None:
        """Redis failed (or failed a moment ago): serve unlimited (fail-open) or refuse (fail-closed)."""
        metrics.DEPENDENCY_ERRORS.labels("redis", "rate_limit").inc()
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = now
            action = "requests are served without rate limits" if self.fail_open else "requests get 503"
            reason = f"{type(exc).__name__}: {exc}" if exc is not None else "it failed a moment ago"
            logger.warning("Redis is unavailable for rate limits (%s); %s", reason, action)
        if self.fail_open:
            return None
        raise RateLimiterUnavailable("The rate limiter (Redis) is unavailable; try again later")

    async def available(self) -> bool | None:
        """Whether Redis answers within the timeout (None when limits live in memory)."""
        if not self.redis:
            return None
        try:
            async with asyncio.timeout(self.timeout):
                return bool(await self.storage.check())
        except OUTAGE_ERRORS:
            return False

    async def _hit(self, route_class: str, keys: tuple[str, ...]) -> Quota | None:
        item = self.items[route_class]
        window = item.get_expiry()
        tightest: Quota | None = None
        for key in keys:
            if self.memory is not None:  # one call, no awaits: what the two below do, in memory
                before, after = self._key_parts[route_class]
                allowed, oldest, hits = self.memory.hit_now(before + key + after, item.amount, window)
                reset_time, remaining = oldest + window, item.amount - hits
            else:
                allowed = await self.limiter.hit(item, route_class, key)
                stats = await self.limiter.get_window_stats(item, route_class, key)
                reset_time, remaining = stats.reset_time, stats.remaining
            reset = max(0, math.ceil(reset_time - time.time()))
            quota = Quota(route_class, item.amount, window, remaining, reset)
            if not allowed:
                metrics.RATE_LIMITED.labels(route_class).inc()
                raise TooManyRequests(
                    f"Rate limit of {item.amount} per {window} s reached for {route_class} requests",
                    headers={"Retry-After": str(max(1, reset)), **quota.headers()},
                )
            if tightest is None or quota.remaining < tightest.remaining:
                tightest = quota
        return tightest


class MovingWindowMemory(MemoryStorage):
    """`limits`' in-memory storage with a moving window that costs O(1) per hit.

    The library's own keeps each key's hits newest first in a list: every hit inserts at the
    front (a copy of the whole window: 130 µs a hit at 20,000 hits a minute) and starts a
    clean-up task that hops to a worker thread per key. Here each key's window is a deque of
    hit times, oldest first: a hit drops the times that left the window and appends its own;
    keys whose window emptied are dropped every SWEEP_SECONDS. Same decisions and figures as
    the library's (a hit is refused when `limit` hits are in the last `expiry` seconds).
    """

    SWEEP_SECONDS = 10.0

    def __init__(self) -> None:
        super().__init__()
        self.windows: dict[str, tuple[int, deque[float]]] = {}
        self._swept = time.time()

    def _window(self, key: str, expiry: int, now: float) -> deque[float]:
        """The key's hit times within the last `expiry` seconds (older ones dropped)."""
        found = self.windows.get(key)
        if found is None:
            times: deque[float] = deque()
            self.windows[key] = (expiry, times)
            return times
        times = found[1]
        cutoff = now - expiry
        while times and times[0] < cutoff:
            times.popleft()
        return times

    def _sweep(self, now: float) -> None:
        """Forget keys with no hit inside their window (at most every SWEEP_SECONDS)."""
        if now - self._swept < self.SWEEP_SECONDS:
            return
        self._swept = now
        idle = [key for key, (expiry, times) in self.windows.items() if not times or times[-1] < now - expiry]
        for key in idle:
            del self.windows[key]

    def _count(self, key: str, limit: int, expiry: int, amount: int) -> tuple[bool, float, deque[float]]:
        """Count `amount` hits for `key` unless that would put more than `limit` in the window:
        (counted, now, the key's window afterwards)."""
        now = time.time()
        self._sweep(now)
        times = self._window(key, expiry, now)
        if len(times) + amount > limit:
            return False, now, times
        times.extend(itertools.repeat(now, amount))
        return True, now, times

    def hit_now(self, key: str, limit: int, expiry: int) -> tuple[bool, float, int]:
        """One hit for `key` unless `limit` hits are in its window already, then the window as
        `get_moving_window` gives it: (counted, time of the oldest hit or now, hits in it).
        The same as `acquire_entry` then `get_moving_window`, without their awaits."""
        counted, now, times = self._count(key, limit, expiry, 1)
        return counted, (times[0] if times else now), len(times)

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        """Count `amount` hits for `key` unless that would put more than `limit` in the window."""
        if amount > limit:
            return False
        return self._count(key, limit, expiry, amount)[0]

    async def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        """(time of the oldest hit in the window, or now when none; hits in the window)."""
        now = time.time()
        found = self.windows.get(key)
        if found is None:
            return now, 0
        times = self._window(key, expiry, now)
        return (times[0] if times else now), len(times)

    async def clear(self, key: str) -> None:
        self.windows.pop(key, None)
        await super().clear(key)

    async def reset(self) -> int | None:
        keys = len(self.windows)
        self.windows.clear()
        return max(keys, await super().reset() or 0)
