"""Load shedding: bounded per-analyzer queues, a lane for cheap analyzers, abandoned work dropped."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from app.core.errors import QueueFull
from app.services.principals import ANONYMOUS_PRINCIPAL as ANYONE
from app.services.scheduler import Lane
from tests.factories import CountingSkin, SlowModel, jpeg_bytes
from tests.services.conftest import publish, running


async def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


async def test_a_full_queue_refuses_at_once_while_cheap_analyses_go_on(make_settings) -> None:
    slow = SlowModel()
    settings = make_settings(analysis_threads=1, analysis_queue_limit=2)
    async with running(settings, CountingSkin(), slow) as services:
        ids = [(await publish(services, jpeg_bytes(color=(i, 2, 3)))).image_id for i in range(5)]
        running_ = [asyncio.ensure_future(services.analysis.analyze(i, ANYONE, "slow")) for i in ids[:3]]
        await wait_until(lambda: len(slow.started) == 1 and services.lanes.heavy.depth("slow") == 2)
        started = time.monotonic()
        with pytest.raises(QueueFull) as full:
            await services.analysis.analyze(ids[3], ANYONE, "slow")
        assert time.monotonic() - started < 0.5  # at once, not after a wait
        assert int(full.value.headers["Retry-After"]) >= 1 and full.value.status == 503
        cheap = await asyncio.wait_for(services.analysis.analyze(ids[4], ANYONE, "skin"), 2)
        assert not cheap.cached
        slow.release.set()
        assert all(not o.cached for o in await asyncio.gather(*running_))


async def test_work_whose_clients_have_gone_is_never_computed(make_settings) -> None:
    slow = SlowModel()
    async with running(make_settings(analysis_threads=1), CountingSkin(), slow) as services:
        first, second = [(await publish(services, jpeg_bytes(color=(i, 5, 5)))).image_id for i in range(2)]
        busy = asyncio.ensure_future(services.analysis.analyze(first, ANYONE, "slow"))
        await wait_until(lambda: slow.started == [first])
        gone = asyncio.ensure_future(services.analysis.analyze(second, ANYONE, "slow"))
        await wait_until(lambda: services.lanes.heavy.depth("slow") == 1)
        gone.cancel()  # the only client of `second` hangs up while it waits
        slow.release.set()
        await busy
        await asyncio.sleep(0.2)
        assert slow.started == [first]


async def test_lanes_take_their_keys_in_turn() -> None:
    lane = Lane("t", 1, 10)
    order: list[str] = []
    gate = threading.Event()

    def work(tag: str) -> None:
        if tag == "block":
            gate.wait(5)
        order.append(tag)

    blocker = asyncio.ensure_future(lane.run("a", work, "block"))
    await asyncio.sleep(0.05)
    queued = [asyncio.ensure_future(lane.run(k, work, f"{k}{i}")) for k in ("a", "b") for i in range(2)]
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.gather(blocker, *queued)
    lane.shutdown()
    assert order == ["block", "a0", "b0", "a1", "b1"]
