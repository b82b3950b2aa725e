"""Fair, bounded scheduling of analyses on worker threads (load shedding).

Cheap analyzers (the mock `skin`, microseconds) run inline, never behind 40 ms model runs;
model-backed ones share `ANALYSIS_THREADS` threads in a lane, each analyzer in its own queue,
taken in turn by freed threads. Waits are bounded in count and time (as Triton's queue policy):

- a run is refused at once (`QueueFull`, 503 with Retry-After) when its queue holds
  `ANALYSIS_QUEUE_LIMIT` runs or its expected wait (`expected_wait`: the runs before it x
  each analyzer's recent run time, a moving average, / threads) exceeds
  `ANALYSIS_MAX_QUEUE_WAIT_SECONDS`; `admit` decides without queueing, `reserve` also holds a
  place for a request still reading its body (counted as queued for the next), so that
  routes refuse before they read a body;
- a run still queued at that deadline is dropped, never computed (503);
- work nobody waits for any more (every client hung up) is dropped when its turn comes;
- work accepted elsewhere (contour jobs, `LaneClient`) waits its turn without these limits.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from app.core import metrics
from app.core.errors import QueueFull
from app.core.threads import ThreadPool

T = TypeVar("T")


class Abandoned(Exception):
    """Queued work that nobody waits for any more: dropped before it started."""


@dataclass
class _Waiting:
    future: asyncio.Future[None]
    wanted: Callable[[], bool]
    since: float = field(default_factory=time.monotonic)
    timer: asyncio.TimerHandle | None = None


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(math.ceil(max(1.0, seconds)))}


@dataclass
class _Place:
    """A place `Lane.reserve` holds for a request until its run queues or the request ends."""

    lane: Lane
    key: str
    held: bool = True
    since: float = field(default_factory=time.monotonic)

    def release(self, queued: bool = False) -> None:
        if self.held:
            self.held = False
            self.lane._reserved[self.key] -= 1
            if queued:  # how long a request reads its body before its run queues (moving average)
                lead, old = time.monotonic() - self.since, self.lane._lead.get(self.key)
                self.lane._lead[self.key] = lead if old is None else 0.8 * old + 0.2 * lead


# The place of the request this task serves (tasks it starts inherit it: single-flight work).
_PLACE: ContextVar[_Place | None] = ContextVar("lane_place", default=None)


class Lane:
    """`threads` worker threads shared by several keys (analyzers), each with a queue bounded
    in length (`queue_limit`) and in waiting time (`max_wait` seconds; 0: no bound)."""

    def __init__(self, name: str, threads: int, queue_limit: int, max_wait: float = 0.0) -> None:
        self.name = name
        self.threads = threads
        self.queue_limit = queue_limit
        self.max_wait = max_wait
        self.pool = ThreadPool(name, threads)
        self._free = threads
        self._queues: dict[str, deque[_Waiting]] = {}
        self._turns: deque[str] = deque()
        self._seconds: dict[str, float] = {}  # moving average of a run, per key (Retry-After)
        self._reserved: dict[str, int] = {}  # places held by requests still reading their body
        self._lead: dict[str, float] = {}  # moving average of a place's time before its run queues

    def depth(self, key: str) -> int:
        """How many runs of `key` wait for a thread."""
        return len(self._queues.get(key, ()))

    def _waiting(self, key: str, reserved: bool) -> int:
        return self.depth(key) + (self._reserved.get(key, 0) if reserved else 0)

    def expected_wait(self, key: str, *, reserved: bool = False) -> float:
        """Seconds a run of `key` queued now would wait for a thread (0 while one is free): the
        queued runs that go before it (its own queue, and up to as many plus one of each other
        key's, which take turns with it) x each key's recent run time, / threads. With
        `reserved`, the places `reserve` holds count as queued runs (free threads take some),
        less the work done while a request reads its body (its recent time before it queues).
        A key that has not run yet adds no time: until then only the count limit holds."""
        mine = self._waiting(key, reserved)
        ahead = -self._free * self._seconds.get(key, 0.0)
        for other in {*self._queues, *(self._reserved if reserved else ())}:
            count = mine if other == key else min(self._waiting(other, reserved), mine + 1)
            ahead += count * self._seconds.get(other, 0.0)
        return max(0.0, ahead / self.threads - (self._lead.get(key, 0.0) if reserved else 0.0))

    def admit(self, key: str, *, reserved: bool = False) -> None:
        """Refuse now (`QueueFull`, 503, Retry-After: the expected wait) a run of `key` that
        would find its queue full or wait longer than `max_wait`; queues nothing. With
        `reserved`, the places `reserve` holds count as queued runs."""
        depth = max(0, self._waiting(key, reserved) - self._free)
        wait = self.expected_wait(key, reserved=reserved)
        if depth >= self.queue_limit:
            detail = f"Too many {key} analyses are waiting ({depth}); try again later"
        elif self.max_wait and wait > self.max_wait:
            detail = (
                f"A {key} analysis would wait about {wait:.1f} s for a worker, longer than "
                f"{self.max_wait:g} s; try again later"
            )
        else:
            return
        metrics.QUEUE_REJECTED.labels(key).inc()
        raise QueueFull(detail, headers=_retry_after(wait))

    @contextmanager
    def reserve(self, key: str) -> Iterator[None]:
        """Admit a request that reads its body before its run of `key` queues (`admit`, counting
        the places held before it), and hold its place until that run queues or the block ends."""
        self.admit(key, reserved=True)
        place = _Place(self, key)
        self._reserved[key] = self._reserved.get(key, 0) + 1
        token = _PLACE.set(place)
        try:
            yield
        finally:
            _PLACE.reset(token)
            place.release()

    # `fn` is `Callable[..., T]`, not a ParamSpec: PEP 612 allows no keyword-only parameters
    # (`wanted`, `shed`) between `*args: P.args` and `**kwargs: P.kwargs`.
    async def run(
        self,
        key: str,
        fn: Callable[..., T],
        *args: Any,
        wanted: Callable[[], bool] = lambda: True,
        shed: bool = True,
        **kwargs: Any,
    ) -> T:
        """Run `fn` on a thread of this lane, waiting in `key`'s queue if all are busy. With
        `shed` (the default) the run is refused if `admit` refuses it, and dropped if it is
        still queued after `max_wait`; without, it waits its turn however long."""
        place = _PLACE.get()
        if place is not None and place.lane is self and place.key == key:
            place.release(queued=True)  # from now on the run itself counts
        waited = 0.0
        if self._free > 0 and not any(self._queues.values()):
            self._free -= 1
        else:
            if shed:
                self.admit(key)
            waited = await self._wait_turn(key, wanted, self.max_wait if shed else 0.0)
        started = time.monotonic()
        try:
            return await self.pool.run(fn, *args, **kwargs)
        finally:
            elapsed = time.monotonic() - started
            self._seconds[key] = 0.8 * self._seconds.get(key, elapsed) + 0.2 * elapsed
            metrics.QUEUE_WAIT_SECONDS.labels(key).observe(waited)
            metrics.INFERENCE_SECONDS.labels(key).observe(elapsed)
            self._hand_over()

    async def _wait_turn(self, key: str, wanted: Callable[[], bool], deadline: float) -> float:
        queue = self._queues.setdefault(key, deque())
        loop = asyncio.get_running_loop()
        waiting = _Waiting(loop.create_future(), wanted)
        queue.append(waiting)
        metrics.QUEUE_DEPTH.labels(key).inc()
        if key not in self._turns:
            self._turns.append(key)
        if deadline:
            waiting.timer = loop.call_later(deadline, self._expire, key, waiting, True)
        try:
            await waiting.future
        except asyncio.CancelledError:
            if waiting.future.done() and not waiting.future.cancelled():
                self._hand_over()  # our turn had come: pass the thread on
            else:
                self._forget(key, waiting)  # the caller left: its place goes now, not at its turn
            raise
        finally:
            if waiting.timer is not None:
                waiting.timer.cancel()
        return time.monotonic() - waiting.since

    def _forget(self, key: str, waiting: _Waiting) -> None:
        """Take a run that will never start out of its queue (if a hand-over has not already)."""
        try:
            self._queues[key].remove(waiting)
        except ValueError:
            return
        metrics.QUEUE_DEPTH.labels(key).dec()

    def _expire(self, key: str, waiting: _Waiting, queued: bool) -> None:
        """A queued run's deadline passed before its turn: refuse it, it is never computed."""
        if waiting.future.done():
            return
        if queued:
            self._forget(key, waiting)
        metrics.QUEUE_EXPIRED.labels(key).inc()
        waited = time.monotonic() - waiting.since
        detail = (
            f"A {key} analysis waited {waited:.1f} s for a worker (at most {self.max_wait:g} s): not started"
        )
        waiting.future.set_exception(QueueFull(detail, headers=_retry_after(self.expected_wait(key))))

    def _hand_over(self) -> None:
        """A thread is free: give it to the next wanted run, taking the keys in turn."""
        for _ in range(len(self._turns)):
            key = self._turns[0]
            self._turns.rotate(-1)
            queue = self._queues[key]
            while queue:
                waiting = queue.popleft()
                metrics.QUEUE_DEPTH.labels(key).dec()
                if waiting.future.done():
                    continue  # its caller was cancelled while it waited
                if not waiting.wanted():
                    waiting.future.set_exception(Abandoned())
                    continue
                if waiting.timer is not None and time.monotonic() - waiting.since > self.max_wait:
                    self._expire(key, waiting, queued=False)  # its timer is late: the loop is busy
                    continue
                waiting.future.set_result(None)
                return
        self._free += 1

    def shutdown(self) -> None:
        self.pool.shutdown()


class LaneClient:
    """One key of a lane, with the `ThreadPool.run` interface, for work accepted elsewhere (the
    job queue, bounded by its own limit): it waits its turn, never shed by the lane's limits."""

    def __init__(self, lane: Lane, key: str) -> None:
        self.lane = lane
        self.key = key

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self.lane.run(self.key, fn, *args, shed=False, **kwargs)


class InlineLane:
    """Cheap analyzers (microseconds: the mock `skin` hashes an id) run right away on the event
    loop: no queue, no thread hop, and under load no wait for a thread to get the GIL back."""

    async def run(
        self,
        key: str,
        fn: Callable[..., T],
        *args: Any,
        wanted: Callable[[], bool] = lambda: True,
        shed: bool = True,
        **kwargs: Any,
    ) -> T:
        started = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            metrics.INFERENCE_SECONDS.labels(key).observe(time.monotonic() - started)

    def admit(self, key: str, *, reserved: bool = False) -> None:
        """Cheap work is never refused."""

    @contextmanager
    def reserve(self, key: str) -> Iterator[None]:
        """Cheap work needs no place."""
        yield


class Lanes:
    """Cheap analyzers inline, model-backed ones in the bounded, fair lane of worker threads."""

    def __init__(self, threads: int, queue_limit: int, max_wait: float = 0.0) -> None:
        self.cheap = InlineLane()
        self.heavy = Lane("analysis", threads, queue_limit, max_wait)

    def of(self, analyzer: object) -> Lane | InlineLane:
        return self.heavy if getattr(analyzer, "model_backed", True) else self.cheap

    def shutdown(self) -> None:
        self.heavy.shutdown()
