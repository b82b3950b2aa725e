"""Fair, bounded scheduling of analyses on worker threads (load shedding).

Cheap analyzers (the mock `skin`, microseconds) run inline, so that they never wait behind
40 ms model runs; model-backed ones share `ANALYSIS_THREADS` threads in a lane. In a lane
each analyzer waits in its own queue, bounded by `ANALYSIS_QUEUE_LIMIT`: a full queue
refuses at once (`QueueFull`, 503 with Retry-After) instead of letting waits
grow without bound, and a freed thread takes the analyzers' queues in turn. Work nobody
waits for any more (every client hung up) is dropped when its turn comes, never computed.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from app.core import metrics
from app.core.errors import QueueFull
from app.core.threads import ThreadPool

P = ParamSpec("P")
T = TypeVar("T")


class Abandoned(Exception):
    """Queued work that nobody waits for any more: dropped before it started."""


@dataclass
class _Waiting:
    future: asyncio.Future[None]
    wanted: Callable[[], bool]
    since: float = field(default_factory=time.monotonic)


class Lane:
    """`threads` worker threads shared by several keys (analyzers), each with a bounded queue."""

    def __init__(self, name: str, threads: int, queue_limit: int) -> None:
        self.name = name
        self.threads = threads
        self.queue_limit = queue_limit
        self.pool = ThreadPool(name, threads)
        self._free = threads
        self._queues: dict[str, deque[_Waiting]] = {}
        self._turns: deque[str] = deque()
        self._seconds: dict[str, float] = {}  # moving average of a run, per key (Retry-After)

    def depth(self, key: str) -> int:
        """How many runs of `key` wait for a thread."""
        return len(self._queues.get(key, ()))

    async def run(
        self,
        key: str,
        fn: Callable[P, T],
        *args: P.args,
        wanted: Callable[[], bool] = lambda: True,
        **kwargs: P.kwargs,
    ) -> T:
        """Run `fn` on a thread of this lane, waiting in `key`'s queue if all are busy."""
        waited = 0.0
        if self._free > 0 and not any(self._queues.values()):
            self._free -= 1
        else:
            waited = await self._wait_turn(key, wanted)
        started = time.monotonic()
        try:
            return await self.pool.run(fn, *args, **kwargs)
        finally:
            elapsed = time.monotonic() - started
            self._seconds[key] = 0.8 * self._seconds.get(key, elapsed) + 0.2 * elapsed
            metrics.QUEUE_WAIT_SECONDS.labels(key).observe(waited)
            metrics.INFERENCE_SECONDS.labels(key).observe(elapsed)
            self._hand_over()

    async def _wait_turn(self, key: str, wanted: Callable[[], bool]) -> float:
        queue = self._queues.setdefault(key, deque())
        if len(queue) >= self.queue_limit:
            metrics.QUEUE_REJECTED.labels(key).inc()
            retry = math.ceil(max(1.0, (len(queue) + 1) * self._seconds.get(key, 0.05) / self.threads))
            raise QueueFull(
                f"Too many {key} analyses are waiting ({len(queue)}); try again later",
                headers={"Retry-After": str(retry)},
            )
        waiting = _Waiting(asyncio.get_running_loop().create_future(), wanted)
        queue.append(waiting)
        metrics.QUEUE_DEPTH.labels(key).inc()
        if key not in self._turns:
            self._turns.append(key)
        try:
            await waiting.future
        except asyncio.CancelledError:
            if waiting.future.done() and not waiting.future.cancelled():
                self._hand_over()  # our turn had come: pass the thread on
            raise
        return time.monotonic() - waiting.since

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
                waiting.future.set_result(None)
                return
        self._free += 1

    def shutdown(self) -> None:
        self.pool.shutdown()


class LaneClient:
    """One key of a lane, with the `ThreadPool.run` interface (for the job queue)."""

    def __init__(self, lane: Lane, key: str) -> None:
        self.lane = lane
        self.key = key

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self.lane.run(self.key, fn, *args, **kwargs)


class InlineLane:
    """Cheap analyzers (microseconds: the mock `skin` hashes an id) run right away on the event
    loop: no queue, no thread hop, and under load no wait for a thread to get the GIL back."""

    async def run(
        self,
        key: str,
        fn: Callable[P, T],
        *args: P.args,
        wanted: Callable[[], bool] = lambda: True,
        **kwargs: P.kwargs,
    ) -> T:
        started = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            metrics.INFERENCE_SECONDS.labels(key).observe(time.monotonic() - started)

    def depth(self, key: str) -> int:
        return 0


class Lanes:
    """Cheap analyzers inline, model-backed ones in the bounded, fair lane of worker threads."""

    def __init__(self, threads: int, queue_limit: int) -> None:
        self.cheap = InlineLane()
        self.heavy = Lane("analysis", threads, queue_limit)

    def of(self, analyzer: object) -> Lane | InlineLane:
        return self.heavy if getattr(analyzer, "model_backed", True) else self.cheap

    def shutdown(self) -> None:
        self.heavy.shutdown()
