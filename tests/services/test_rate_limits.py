"""app.services.rate_limits: moving-window limits per route class and key, their RateLimit headers,
and what an unreachable Redis does under each outage policy (a real Redis where one is needed)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable

import pytest

from app.core.config import Settings
from app.core.errors import RateLimiterUnavailable, TooManyRequests
from app.services import rate_limits
from app.services.rate_limit_settings import RateLimitSettings
from app.services.rate_limits import MovingWindowMemory, Quota, RateLimits
from tests.redis_servers import redis_url


def limits(**overrides: object) -> RateLimits:
    values: dict[str, object] = {
        "rate_limit_upload": "3/minute",
        "rate_limit_analyze": "2/minute",
        "rate_limit_default": "100/minute",
    }
    values.update(overrides)
    return RateLimits(RateLimitSettings.from_settings(Settings(_env_file=None, **values)))  # type: ignore[arg-type]


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_quota_headers_follow_the_ietf_draft() -> None:
    quota = Quota("upload", limit=10, window=60, remaining=7, reset=42)
    assert quota.headers() == {
        "RateLimit": '"upload";r=7;t=42',
        "RateLimit-Policy": '"upload";q=10;w=60',
    }


async def test_a_key_is_refused_once_its_window_is_full() -> None:
    rl = limits()
    quotas = [await rl.hit("upload", "user:1") for _ in range(3)]
    assert [q.remaining for q in quotas if q] == [2, 1, 0]
    assert all(q is not None and (q.limit, q.window) == (3, 60) and 0 <= q.reset <= 60 for q in quotas)
    with pytest.raises(TooManyRequests) as caught:
        await rl.hit("upload", "user:1")
    assert caught.value.status == 429
    assert 1 <= int(caught.value.headers["Retry-After"]) <= 60
    assert caught.value.headers["RateLimit-Policy"] == '"upload";q=3;w=60'
    assert caught.value.headers["RateLimit"].startswith('"upload";r=0;')


async def test_memory_hits_are_kept_where_the_library_looks_for_them() -> None:
    """The in-memory path counts under the library's own key, so its strategy sees the hits."""
    rl = limits()
    await rl.hit("upload", "user:1")
    quota = await rl.hit("upload", "user:1")
    stats = await rl.limiter.get_window_stats(rl.items["upload"], "upload", "user:1")
    assert quota is not None and stats.remaining == quota.remaining == 1
    await rl.limiter.clear(rl.items["upload"], "upload", "user:1")
    assert [(await rl.hit("upload", "user:1")).remaining for _ in range(3)] == [2, 1, 0]  # type: ignore[union-attr]


async def test_keys_and_route_classes_are_counted_apart() -> None:
    rl = limits()
    for _ in range(3):
        await rl.hit("upload", "user:1")
    assert (await rl.hit("upload", "user:2")) is not None  # another caller
    assert (await rl.hit("analyze", "user:1")) is not None  # another route class
    assert (await rl.hit("default", "user:1")) is not None


async def test_the_tightest_key_is_reported_and_any_full_key_refuses() -> None:
    rl = limits()
    await rl.hit("upload", "addr:10.0.0.1")
    await rl.hit("upload", "addr:10.0.0.1")
    quota = await rl.hit("upload", "user:1", "addr:10.0.0.1")
    assert quota is not None and quota.remaining == 0  # the address's, not the user's 2
    with pytest.raises(TooManyRequests):
        await rl.hit("upload", "user:2", "addr:10.0.0.1")


async def test_disabled_limits_count_nothing() -> None:
    rl = limits(rate_limits_enabled=False)
    for _ in range(10):
        assert await rl.hit("analyze", "user:1") is None


async def test_in_memory_limits_report_no_redis() -> None:
    assert await limits().available() is None


class Clock:
    """`time.time` of the rate-limit module, moved by the test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1_000_000.0
        monkeypatch.setattr(rate_limits.time, "time", lambda: self.now)


async def test_hits_leave_the_moving_window_as_it_slides(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(monkeypatch)
    rl = limits()  # upload: 3 per minute
    for _ in range(3):  # at 0, 20 and 40 s
        await rl.hit("upload", "user:1")
        clock.now += 20
    clock.now -= 20
    with pytest.raises(TooManyRequests) as caught:
        await rl.hit("upload", "user:1")
    assert caught.value.headers["Retry-After"] == "20"  # the first hit leaves the window in 20 s
    clock.now += 20.5  # the first hit has left; the refused one was never counted
    quota = await rl.hit("upload", "user:1")
    assert quota is not None and (quota.remaining, quota.reset) == (0, 20)  # the hit at 20 s is next
    clock.now += 60.5  # every hit has left
    assert [(await rl.hit("upload", "user:1")).remaining for _ in range(3)] == [2, 1, 0]  # type: ignore[union-attr]


async def test_memory_windows_forget_idle_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(monkeypatch)
    storage = MovingWindowMemory()
    assert await storage.acquire_entry("idle", limit=5, expiry=60)
    assert await storage.acquire_entry("busy", limit=5, expiry=600)
    assert await storage.get_moving_window("idle", 5, 60) == (clock.now, 1)
    clock.now += 61 + MovingWindowMemory.SWEEP_SECONDS
    assert await storage.acquire_entry("other", limit=5, expiry=60)  # a hit sweeps
    assert set(storage.windows) == {"busy", "other"}
    assert await storage.get_moving_window("idle", 5, 60) == (clock.now, 0)
    assert not await storage.acquire_entry("busy", limit=5, expiry=600, amount=6)  # more than the limit
    await storage.clear("busy")
    assert await storage.get_moving_window("busy", 5, 600) == (clock.now, 0)


@pytest.fixture
def redis_limits() -> Callable[..., RateLimits]:
    return lambda **extra: limits(redis_url=redis_url(), **extra)


async def test_limits_in_redis_are_shared_between_instances(redis_limits: Callable[..., RateLimits]) -> None:
    key = f"test:{uuid.uuid4().hex}"
    first, second = redis_limits(), redis_limits()
    assert await first.available() is True
    await first.hit("analyze", key)
    quota = await second.hit("analyze", key)
    assert quota is not None and quota.remaining == 0
    with pytest.raises(TooManyRequests):
        await first.hit("analyze", key)


async def test_an_unreachable_redis_fails_open_by_default() -> None:
    rl = limits(redis_url=f"redis://127.0.0.1:{closed_port()}/0", redis_timeout_seconds=1)
    assert await rl.available() is False
    for _ in range(5):  # the first call finds it down, the next ones do not wait for it
        assert await rl.hit("analyze", "user:1") is None


async def test_an_unreachable_redis_fails_closed_when_told() -> None:
    rl = limits(
        redis_url=f"redis://127.0.0.1:{closed_port()}/0",
        redis_timeout_seconds=1,
        redis_outage_policy="fail-closed",
    )
    for _ in range(2):
        with pytest.raises(RateLimiterUnavailable) as caught:
            await rl.hit("analyze", "user:1")
        assert caught.value.status == 503
