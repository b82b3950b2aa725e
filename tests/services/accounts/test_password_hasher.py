"""The password-hashing bound (app.services.accounts.password_hasher): its threads, queue limit and wait."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable

import pytest

from app.core.errors import ServiceUnavailable
from app.services.accounts.password_hasher import PasswordHasher


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., PasswordHasher]]:
    made: list[PasswordHasher] = []

    def _make(concurrency: int = 1, queue_limit: int = 1, max_wait: float = 60) -> PasswordHasher:
        made.append(PasswordHasher(concurrency, queue_limit, max_wait))
        return made[-1]

    yield _make
    for hasher in made:
        hasher.shutdown()


async def test_hashes_verify_and_wrong_passwords_do_not(make: Callable[..., PasswordHasher]) -> None:
    hasher = make()
    stored = await hasher.hash("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert await hasher.verify("correct horse battery", stored) == (True, None)
    assert (await hasher.verify("wrong", stored))[0] is False
    assert (await hasher.verify("anything", None))[0] is False  # the dummy hash: same work


async def test_beyond_the_queue_limit_a_call_is_refused_at_once(make: Callable[..., PasswordHasher]) -> None:
    hasher = make(concurrency=1, queue_limit=1)
    gate = threading.Event()
    running = asyncio.ensure_future(hasher.run(gate.wait))
    await asyncio.sleep(0)
    queued = asyncio.ensure_future(hasher.verify("queued", None))
    await asyncio.sleep(0)
    with pytest.raises(ServiceUnavailable) as refused:
        await hasher.verify("one too many", None)
    assert int(refused.value.headers["Retry-After"]) >= 1
    gate.set()
    assert await running is True
    assert (await queued)[0] is False  # the queued call was served once the thread was free


async def test_a_call_that_waits_past_the_max_wait_is_refused(make: Callable[..., PasswordHasher]) -> None:
    hasher = make(concurrency=1, queue_limit=10, max_wait=0.2)
    gate = threading.Event()
    running = asyncio.ensure_future(hasher.run(gate.wait))
    await asyncio.sleep(0)
    try:
        with pytest.raises(ServiceUnavailable):
            await hasher.verify("waits too long", None)
    finally:
        gate.set()
        await running
    assert (await hasher.verify("served again", None))[0] is False


async def test_concurrency_threads_run_at_once(make: Callable[..., PasswordHasher]) -> None:
    hasher = make(concurrency=2, queue_limit=0)
    both = threading.Barrier(2, timeout=30)  # passes only if two calls run at the same time
    assert await asyncio.gather(hasher.run(both.wait), hasher.run(both.wait)) in ([0, 1], [1, 0])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own nice value is Linux's")
async def test_hashing_threads_run_at_a_lower_cpu_priority() -> None:
    def own_nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    hasher = PasswordHasher(1, 1, 60, nice=5)
    try:
        assert await hasher.run(own_nice) == min(19, own_nice() + 5)
        assert own_nice() == os.getpriority(os.PRIO_PROCESS, 0)  # this thread is untouched
    finally:
        hasher.shutdown()
