"""app.services.accounts.login_throttle: which counters a login is charged to, the delay schedule,
lockouts with Retry-After, and what a right password clears (over the in-memory attempt store)."""

from __future__ import annotations

import asyncio

import pytest

from app.core.device_cookies import Device
from app.core.errors import TooManyRequests
from app.services.accounts.login_attempts import MemoryAttempts
from app.services.accounts.login_throttle import LoginLimits, LoginThrottle

DEVICE = Device(nonce="n1", issued_at=0)


def throttle(**limits: float) -> LoginThrottle:
    values: dict[str, float] = {
        "free": 100,
        "window": 600,
        "max_delay": 8,
        "untrusted": 3,
        "device": 2,
        "address": 5,
    }
    values.update(limits)
    return LoginThrottle(MemoryAttempts(), LoginLimits(**values))  # type: ignore[arg-type]


def test_a_trusted_device_is_counted_alone() -> None:
    counters = throttle().counters("alice", "10.0.0.1", DEVICE)
    assert [(c.key, c.limit) for c in counters] == [("device:n1", 2)]


def test_an_untrusted_login_counts_against_its_username_and_address() -> None:
    counters = throttle().counters("alice", "10.0.0.1", None)
    assert [c.limit for c in counters] == [3, 5]
    assert counters[0].key.startswith("user:") and "alice" not in counters[0].key
    assert counters[1].key == "addr:10.0.0.1"
    assert counters[0].key != throttle().counters("bob", None, None)[0].key
    assert len(throttle().counters("alice", None, None)) == 1  # no address known


def test_the_delay_doubles_after_the_free_attempts_up_to_the_maximum() -> None:
    t = throttle(free=3, max_delay=1.5)
    assert [t.delay(n) for n in range(8)] == [0.0, 0.0, 0.0, 0.25, 0.5, 1.0, 1.5, 1.5]
    assert t.delay(10_000) == 1.5  # no overflow for a huge count


async def test_a_full_counter_locks_out_with_retry_after() -> None:
    t = throttle(untrusted=3)
    for _ in range(3):
        await t.begin("alice", None, None)  # wrong passwords: never settled
    with pytest.raises(TooManyRequests) as caught:
        await t.begin("alice", None, None)
    assert caught.value.status == 429
    assert 590 <= int(caught.value.headers["Retry-After"]) <= 600
    # Another username from another address is not locked out.
    await t.begin("bob", "10.0.0.2", None)


async def test_an_untrusted_right_password_does_not_clear_earlier_failures() -> None:
    t = throttle(untrusted=3)
    await t.begin("alice", None, None)
    await t.begin("alice", None, None)
    right = await t.begin("alice", None, None)
    await t.succeeded(right)  # its own place is freed...
    await t.begin("alice", None, None)
    with pytest.raises(TooManyRequests):  # ...but the two failures still count
        await t.begin("alice", None, None)


async def test_a_trusted_devices_right_password_starts_it_afresh() -> None:
    t = throttle(device=2)
    await t.begin("alice", None, DEVICE)
    right = await t.begin("alice", None, DEVICE)
    await t.succeeded(right)
    await t.begin("alice", None, DEVICE)
    await t.begin("alice", None, DEVICE)
    with pytest.raises(TooManyRequests):
        await t.begin("alice", None, DEVICE)


async def test_a_locked_device_leaves_untrusted_logins_of_the_user_open() -> None:
    t = throttle(device=1, untrusted=1)
    await t.begin("alice", None, DEVICE)
    with pytest.raises(TooManyRequests):
        await t.begin("alice", None, DEVICE)
    await t.begin("alice", None, None)  # the username's own allowance is untouched


async def test_a_login_cancelled_during_its_delay_is_not_counted() -> None:
    t = throttle(free=0, untrusted=1, max_delay=30)
    task = asyncio.create_task(t.begin("alice", None, None))
    for _ in range(5):
        await asyncio.sleep(0)  # it reserves its place, then waits 0.25 s before the password check
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The cancelled attempt's place is free again: the only allowed attempt is still there.
    attempt = await t.begin("alice", None, None)
    assert attempt.reservation.granted and attempt.reservation.previous == 0
    with pytest.raises(TooManyRequests):
        await t.begin("alice", None, None)
