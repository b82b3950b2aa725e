"""Load shedding: bounded per-analyzer queues, a lane for cheap analyzers, abandoned work dropped."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import pytest

from app.core.errors import QueueFull
from app.services.accounts.principals import ANONYMOUS_PRINCIPAL as ANYONE
from app.services.analysis.scheduler import Lane, LaneClient
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


async def test_a_run_that_would_wait_past_the_deadline_is_refused_at_once() -> None:
    """The expected wait (queued runs x their recent run time / threads) bounds admission, not
    only the queue's length; Retry-After is that estimate."""
    lane = Lane("t", 1, 100, max_wait=1.0)
    gate = threading.Event()
    try:
        await lane.run("a", time.sleep, 0.4)  # the recent run time of `a`: at least 0.4 s
        blocker = asyncio.ensure_future(lane.run("a", gate.wait, 10))
        await wait_until(lambda: lane.depth("a") == 0 and not blocker.done())
        queued = [asyncio.ensure_future(lane.run("a", lambda: None)) for _ in range(3)]
        await wait_until(lambda: lane.depth("a") == 3)  # ahead of a fourth: >= 3 x 0.4 s > 1 s
        assert lane.expected_wait("a") >= 1.2
        started = time.monotonic()
        with pytest.raises(QueueFull) as late:
            await lane.run("a", lambda: None)
        assert time.monotonic() - started < 0.5
        assert late.value.status == 503 and int(late.value.headers["Retry-After"]) >= 2
        assert lane.expected_wait("b") < lane.expected_wait("a")  # `b` takes its turn after one `a`
        gate.set()
        await asyncio.gather(blocker, *queued)
        assert lane.expected_wait("a") == 0  # a thread is free again
    finally:
        gate.set()
        lane.shutdown()


async def test_a_queued_run_past_the_deadline_is_dropped_never_computed() -> None:
    lane = Lane("t", 1, 100, max_wait=0.2)
    gate = threading.Event()
    ran: list[str] = []
    try:
        blocker = asyncio.ensure_future(lane.run("a", gate.wait, 10))
        await asyncio.sleep(0.05)
        waiting = asyncio.ensure_future(lane.run("a", ran.append, "late"))
        await wait_until(lambda: lane.depth("a") == 1)
        with pytest.raises(QueueFull) as dropped:
            await asyncio.wait_for(waiting, 5)  # answered when its deadline passes, not at its turn
        assert not blocker.done() and lane.depth("a") == 0
        assert int(dropped.value.headers["Retry-After"]) >= 1
        gate.set()
        await blocker
        await asyncio.sleep(0.1)
        assert ran == []
    finally:
        gate.set()
        lane.shutdown()


async def test_jobs_already_accepted_are_never_shed() -> None:
    """A lane client of accepted work (contour jobs) waits its turn past the limits."""
    lane = Lane("t", 1, 1, max_wait=0.05)
    jobs = LaneClient(lane, "jobs")
    gate = threading.Event()
    try:
        blocker = asyncio.ensure_future(lane.run("a", gate.wait, 10))
        await asyncio.sleep(0.05)
        queued = [asyncio.ensure_future(jobs.run(lambda i=i: i)) for i in range(3)]
        await asyncio.sleep(0.3)  # past the deadline, over the queue limit
        gate.set()
        assert await asyncio.gather(*queued) == [0, 1, 2]
        await blocker
    finally:
        gate.set()
        lane.shutdown()


async def test_requests_still_reading_their_body_hold_a_place() -> None:
    """`reserve` admits counting the places held before it (free threads take some) and hands
    its place over to the run once that queues."""
    lane = Lane("t", 2, 1)
    gate = threading.Event()
    try:
        with contextlib.ExitStack() as stack:
            for _ in range(3):  # two go to the free threads, one to the queue
                stack.enter_context(lane.reserve("a"))
            with pytest.raises(QueueFull), lane.reserve("a"):
                pass
        with lane.reserve("a"):  # the places were given back
            first = asyncio.ensure_future(lane.run("a", gate.wait, 10))  # inherits the place
            await asyncio.sleep(0.05)
            with lane.reserve("a"), lane.reserve("a"):  # the place went to the run: one free thread
                with pytest.raises(QueueFull), lane.reserve("a"):
                    pass
        gate.set()
        await first
    finally:
        gate.set()
        lane.shutdown()


async def test_the_time_a_request_reads_its_body_is_counted_off_its_wait() -> None:
    """Runs finish while an admitted request still reads its body: the door's estimate takes
    off the recent time between admission and queueing."""
    lane = Lane("t", 1, 100, max_wait=1.0)
    gate = threading.Event()
    try:
        await lane.run("a", time.sleep, 0.3)  # the recent run time of `a`: at least 0.3 s
        blocker = asyncio.ensure_future(lane.run("a", gate.wait, 10))
        await asyncio.sleep(0.05)
        queued = [asyncio.ensure_future(lane.run("a", lambda: None)) for _ in range(3)]
        await wait_until(lambda: lane.depth("a") == 3)
        with lane.reserve("b"):
            await asyncio.sleep(0.5)  # reads its body for 0.5 s, then queues
            waiting = asyncio.ensure_future(lane.run("b", lambda: None))
            await wait_until(lambda: lane.depth("b") == 1)
        assert lane.expected_wait("b", reserved=True) <= lane.expected_wait("b") - 0.45
        assert lane.expected_wait("a", reserved=True) == lane.expected_wait("a")  # no such time yet
        gate.set()
        await asyncio.gather(blocker, waiting, *queued)
    finally:
        gate.set()
        lane.shutdown()
