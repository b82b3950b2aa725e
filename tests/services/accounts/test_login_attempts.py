"""Login attempt counters (app.services.accounts.login_attempts): atomic reservations in memory and in a
real Redis, shared between workers, and what a Redis outage does (REDIS_OUTAGE_POLICY)."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from app.core.config import Settings
from app.services.accounts import login_attempts
from app.services.accounts.login_attempts import AttemptStore, Counter, MemoryAttempts, RedisAttempts
from tests.logins import PASSWORD, SMALL, client_from, login, register, running
from tests.redis_servers import RedisServer, redis_url


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[AttemptStore]:
    made: AttemptStore = (
        MemoryAttempts() if request.param == "memory" else RedisAttempts(redis_url(), 2.0, "fail-closed")
    )
    yield made
    await made.close()


def counters(limit: int = 3) -> list[Counter]:
    """Two fresh counters (unique keys: the shared Redis outlives tests)."""
    tag = uuid.uuid4().hex
    return [Counter(f"test:user:{tag}", limit), Counter(f"test:addr:{tag}", limit + 10)]


async def test_reservations_stop_at_the_limit_and_say_when_to_retry(store: AttemptStore) -> None:
    keys = counters(limit=3)
    granted = [await store.reserve(keys, window=60) for _ in range(3)]
    assert [r.granted for r in granted] == [True] * 3
    assert [r.previous for r in granted] == [0, 1, 2]
    refused = await store.reserve(keys, window=60)
    assert not refused.granted and 59 <= refused.retry_after <= 60


async def test_a_released_reservation_frees_its_place_and_clear_empties_a_counter(
    store: AttemptStore,
) -> None:
    keys = counters(limit=2)
    first, second = [await store.reserve(keys, window=60) for _ in range(2)]
    assert not (await store.reserve(keys, window=60)).granted
    await store.release(second)
    assert (await store.reserve(keys, window=60)).granted
    await store.release(first, clear=(keys[0].key,))
    assert [(await store.reserve(keys[:1], window=60)).granted for _ in range(3)] == [True, True, False]


async def test_attempts_leave_with_their_window(store: AttemptStore) -> None:
    keys = counters(limit=1)
    assert (await store.reserve(keys, window=0.3)).granted
    assert not (await store.reserve(keys, window=0.3)).granted
    await asyncio.sleep(0.5)
    assert (await store.reserve(keys, window=0.3)).granted


async def test_a_full_counter_refuses_without_recording_in_the_others(store: AttemptStore) -> None:
    full, other = counters(limit=1)
    assert (await store.reserve([full], window=60)).granted
    assert not (await store.reserve([full, other], window=60)).granted
    assert (await store.reserve([other], window=60)).previous == 0


async def test_concurrent_reservations_from_two_workers_never_pass_the_limit() -> None:
    url = redis_url()
    workers = [RedisAttempts(url, 2.0, "fail-closed") for _ in range(2)]
    keys = counters(limit=20)
    try:
        results = await asyncio.gather(*(workers[i % 2].reserve(keys, window=60) for i in range(60)))
    finally:
        for worker in workers:
            await worker.close()
    assert sum(r.granted for r in results) == 20


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def dependency_errors(metrics_text: str) -> float:
    found = re.search(
        r'^dependency_errors_total\{dependency="redis",use="login_throttle"\} (\S+)$', metrics_text, re.M
    )
    return float(found[1]) if found else 0.0


async def test_a_redis_outage_fails_open_by_default_with_a_warning_and_a_metric(
    make_settings: Callable[..., Settings],
    own_redis: RedisServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One warning per interval: an interval longer than the test, however slow the machine.
    monkeypatch.setattr(login_attempts, "OUTAGE_WARNING_SECONDS", 3600.0)
    # Rate limits off: this is the login throttle's outage alone (rate limits have their own).
    settings = make_settings(**SMALL, redis_url=own_redis.url, rate_limits_enabled=False)
    assert settings.redis_outage_policy == "fail-open"
    async with running(settings) as app:
        alice = await register(app)
        async with client_from(app, "10.1.0.1") as c:
            assert (await login(c, alice, "wrong guess")).status_code == 401
            before = dependency_errors((await c.get("/metrics")).text)
            own_redis.stop()
            throttle_log = logging.getLogger("app.login_throttle")  # "app" does not propagate
            throttle_log.addHandler(caplog.handler)
            try:
                assert (await login(c, alice, "wrong guess")).status_code == 401
                assert (await login(c, alice)).status_code == 200
                # Counted in this process meanwhile: the limit still holds.
                c.cookies.clear()
                answers = [(await login(c, alice, "wrong guess")).status_code for _ in range(8)]
            finally:
                throttle_log.removeHandler(caplog.handler)
            assert answers == [401] * 7 + [429]
            assert dependency_errors((await c.get("/metrics")).text) - before >= 10
            warnings = [r for r in caplog.records if "Redis unavailable for the login throttle" in r.message]
            assert len(warnings) == 1  # at most one every few seconds, however many failures
            own_redis.start()  # back (empty): served from Redis again, without a restart
            c.cookies.clear()
            assert (await login(c, alice)).status_code == 200


async def test_a_redis_outage_fails_closed_when_configured(
    make_settings: Callable[..., Settings], own_redis: RedisServer
) -> None:
    settings = make_settings(
        **SMALL, redis_url=own_redis.url, rate_limits_enabled=False, redis_outage_policy="fail-closed"
    )
    async with running(settings) as app:
        alice = await register(app)
        async with client_from(app, "10.1.1.1") as c:
            assert (await login(c, alice)).status_code == 200
            own_redis.stop()
            refused: httpx.Response = await login(c, alice)
            assert refused.status_code == 503
            assert refused.headers["content-type"] == "application/problem+json"
            assert (
                refused.json()["code"] == "service_unavailable" and int(refused.headers["retry-after"]) >= 1
            )
            own_redis.start()
            assert (await login(c, alice)).status_code == 200
            assert (await login(c, alice, PASSWORD)).status_code == 200
