"""Counters of login attempts in a sliding window, reserved atomically: in memory or in Redis.

Each counter (a username's untrusted clients, a device, an address) holds the times of its
recent attempts. `reserve` checks every counter against its limit and, only if all are under
it, records the attempt in all of them, in one atomic step: concurrent logins can never
check more passwords than the limit. A reservation is released when its password was right
(or never checked); otherwise it stays, as a failure, until it leaves the window.

`MemoryAttempts` counts in this process (atomic: nothing awaits between the check and the
record). `RedisAttempts` keeps one sorted set per counter and reserves with a Lua script
(atomic in Redis, with expiry; the time is Redis's own, so every replica agrees), so the
limits hold across workers and replicas. If Redis fails, REDIS_OUTAGE_POLICY decides:
`fail-open` counts in this process instead (a warning logged at most every few seconds,
`dependency_errors_total{dependency="redis",use="login_throttle"}` counted), `fail-closed`
answers 503 with Retry-After.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal, Protocol, cast

import coredis
from coredis.retry import NoRetryPolicy
from coredis.typing import ValueT

from app.core import metrics
from app.core.errors import ServiceUnavailable
from app.core.redis_settings import RedisSettings

logger = logging.getLogger("app.login_throttle")

OUTAGE_WARNING_SECONDS = 5.0
OUTAGE_RETRY_AFTER = "5"


@dataclass(frozen=True)
class Counter:
    """One counter and the most attempts it may hold in the window."""

    key: str
    limit: int


@dataclass
class Reservation:
    """An attempt recorded in some counters (`granted`), or refused by a full one."""

    granted: bool
    previous: int  # the most attempts any of its counters held before this one
    retry_after: float = 0.0  # seconds until the full counter frees a place (when refused)
    member: str = field(default_factory=lambda: uuid.uuid4().hex)
    keys: tuple[str, ...] = ()
    store: AttemptStore | None = None


class AttemptStore(Protocol):
    async def reserve(self, counters: list[Counter], window: float) -> Reservation: ...

    async def release(self, reservation: Reservation, clear: tuple[str, ...] = ()) -> None: ...

    async def close(self) -> None: ...


class MemoryAttempts:
    """Counters in this process's memory, at most `max_keys` of them (expired ones go first)."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._attempts: dict[str, OrderedDict[str, float]] = {}

    def _recent(self, key: str, now: float, window: float) -> OrderedDict[str, float]:
        attempts = self._attempts.get(key)
        if attempts is None:
            return OrderedDict()
        while attempts and now - next(iter(attempts.values())) >= window:
            attempts.popitem(last=False)
        if not attempts:
            del self._attempts[key]
        return attempts

    def _make_room(self, now: float, window: float) -> None:
        if len(self._attempts) < self.max_keys:
            return
        for key in list(self._attempts):
            self._recent(key, now, window)
        while len(self._attempts) >= self.max_keys:  # still full: forget the oldest counters
            del self._attempts[next(iter(self._attempts))]

    async def reserve(self, counters: list[Counter], window: float) -> Reservation:
        now = time.monotonic()
        recent = [self._recent(c.key, now, window) for c in counters]
        previous = max((len(r) for r in recent), default=0)
        full = [r for c, r in zip(counters, recent, strict=True) if len(r) >= c.limit]
        if full:
            retry = max(window - (now - next(iter(r.values()))) for r in full)
            return Reservation(False, previous, retry_after=retry)
        self._make_room(now, window)
        reservation = Reservation(True, previous, keys=tuple(c.key for c in counters), store=self)
        for counter in counters:
            self._attempts.setdefault(counter.key, OrderedDict())[reservation.member] = now
        return reservation

    async def release(self, reservation: Reservation, clear: tuple[str, ...] = ()) -> None:
        for key in reservation.keys:
            attempts = self._attempts.get(key)
            if attempts is not None:
                attempts.pop(reservation.member, None)
                if not attempts:
                    del self._attempts[key]
        for key in clear:
            self._attempts.pop(key, None)

    async def close(self) -> None:
        self._attempts.clear()


# KEYS: the counters. ARGV: window (ms), member, then each counter's limit.
# Returns {granted (0/1), most attempts held before, ms until a full counter frees a place}.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local previous, retry, full = 0, 0, false
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local n = redis.call('ZCARD', key)
  if n > previous then previous = n end
  if n >= tonumber(ARGV[2 + i]) then
    full = true
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if oldest[2] then retry = math.max(retry, tonumber(oldest[2]) + window - now) end
  end
end
if full then return {0, previous, retry} end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[2])
  redis.call('PEXPIRE', key, window)
end
return {1, previous, 0}
"""

# KEYS: counters to remove ARGV[1] from, then (from ARGV[2] + 1 on) counters to clear.
_RELEASE = """
local first_clear = tonumber(ARGV[2]) + 1
for i, key in ipairs(KEYS) do
  if i < first_clear then redis.call('ZREM', key, ARGV[1]) else redis.call('DEL', key) end
end
return 0
"""

OutagePolicy = Literal["fail-open", "fail-closed"]


class RedisAttempts:
    """Counters in Redis, shared by every worker and replica; `fallback` counts during an outage."""

    def __init__(self, url: str, timeout: float, policy: OutagePolicy, prefix: str = "login:") -> None:
        self.client = coredis.Redis.from_url(
            url, connect_timeout=timeout, stream_timeout=timeout, retry_policy=NoRetryPolicy()
        )
        self.policy = policy
        self.prefix = prefix
        self.fallback = MemoryAttempts()
        self._reserve = self.client.register_script(_RESERVE)
        self._release = self.client.register_script(_RELEASE)
        self._warned_at = -math.inf

    def _outage(self, error: Exception, refuse: bool = True) -> None:
        """Count and (now and then) log a Redis failure; ServiceUnavailable when failing closed
        (and `refuse`: a release never turns a correct password into an error)."""
        metrics.DEPENDENCY_ERRORS.labels(dependency="redis", use="login_throttle").inc()
        now = time.monotonic()
        if now - self._warned_at >= OUTAGE_WARNING_SECONDS:
            self._warned_at = now
            action = "refusing logins (503)" if self.policy == "fail-closed" else "counting in this process"
            logger.warning("Redis unavailable for the login throttle (%s): %s", action, error)
        if refuse and self.policy == "fail-closed":
            raise ServiceUnavailable(
                "Logins are unavailable: the login throttle's store (Redis) is down",
                headers={"Retry-After": OUTAGE_RETRY_AFTER},
            ) from error

    async def reserve(self, counters: list[Counter], window: float) -> Reservation:
        keys = tuple(self.prefix + c.key for c in counters)
        args: list[ValueT] = [math.ceil(window * 1000), uuid.uuid4().hex, *(c.limit for c in counters)]
        try:
            # The script answers {granted, previous, retry ms}; a script's reply is untyped.
            granted, previous, retry_ms = cast(list[int], await self._reserve(keys=keys, args=args))
        except (coredis.exceptions.RedisError, OSError) as error:
            self._outage(error)
            return await self.fallback.reserve(counters, window)
        if not granted:
            return Reservation(False, int(previous), retry_after=int(retry_ms) / 1000)
        return Reservation(True, int(previous), member=str(args[1]), keys=keys, store=self)

    async def release(self, reservation: Reservation, clear: tuple[str, ...] = ()) -> None:
        keys = (*reservation.keys, *(self.prefix + key for key in clear))
        try:
            await self._release(keys=keys, args=[reservation.member, len(reservation.keys)])
        except (coredis.exceptions.RedisError, OSError) as error:
            self._outage(error, refuse=False)  # the reservation then leaves with its window

    async def close(self) -> None:
        self.client.connection_pool.disconnect()
        await self.fallback.close()


def attempt_store(settings: RedisSettings) -> AttemptStore:
    """Redis when REDIS_URL is set (shared by every worker and replica), else this process's memory."""
    if settings.redis_url:
        timeout = settings.redis_timeout_seconds
        return RedisAttempts(settings.redis_url, timeout, settings.redis_outage_policy)
    return MemoryAttempts()
