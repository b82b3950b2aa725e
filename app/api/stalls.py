"""Request bodies that crawl are cut with RequestTimeout (408, `Connection: close`):

- a read that waits longer than `timeout` (BODY_READ_TIMEOUT_SECONDS) for the next chunk
  (the client went silent);
- after `grace` seconds (BODY_GRACE_SECONDS), a window of `window` seconds
  (BODY_MIN_RATE_WINDOW_SECONDS) that brought fewer than `min_rate_bytes` bytes
  (BODY_MIN_RATE_BYTES): a client trickling a byte every few seconds never goes silent
  for long, but it holds a request slot, a connection and a temp file for nothing;
- a body still arriving `deadline` seconds (REQUEST_BODY_DEADLINE_SECONDS) after its first
  read: whatever its rate, no body holds its request forever.

Every route reads its body through `StallGuard.body(receive)` (`BodyStream` for the lean
upload and analyze paths and the streamed forms, `BodyLimitMiddleware` for buffered bodies),
so the limits hold on every route. A request is only ever cut while it waits for its body: time the
service itself spends between reads is not held against the client.

One sweeping task watches every read in progress (a dict entry per read), instead of a timer
per chunk: asyncio keeps cancelled timers in its heap until they would have fired, and with a
timer per chunk that heap grows by thousands per second under load (measured: ~30 µs a read).
The sweep also judges the rate windows, so a chunk costs one dict entry and an addition.
"""

from __future__ import annotations

import asyncio
import time

from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive

from app.core import metrics
from app.core.errors import RequestTimeout

CLOSE = {"Connection": "close"}  # the rest of a cut body is never read: the connection goes


class GuardedBody:
    """The `receive` of one request, its body reads watched by a `StallGuard` (a drop-in
    replacement for the ASGI `receive`)."""

    __slots__ = ("guard", "receive", "started", "window_started", "window_bytes")

    def __init__(self, guard: StallGuard, receive: Receive) -> None:
        self.guard = guard
        self.receive = receive
        self.started = 0.0  # first read (0: none yet)
        self.window_started = 0.0
        self.window_bytes = 0

    async def __call__(self) -> Message:
        """`await receive()`, or RequestTimeout when the body crawls (see the module)."""
        guard = self.guard
        task = asyncio.current_task()
        if task is None:  # not in a task (never the case under an ASGI server)
            return await self.receive()
        now = time.monotonic()
        if not self.started:
            self.started = self.window_started = now
        guard._reading[task] = (now, self)
        sweeper, loop = guard._sweeper, asyncio.get_running_loop()
        # A sweeper of another loop may never end (its loop closed under it): start one here
        if sweeper is None or sweeper.done() or sweeper.get_loop() is not loop:
            guard._sweeper = loop.create_task(guard._sweep())
        try:
            message = await self.receive()
        except asyncio.CancelledError:
            cut = guard._expired.pop(task, None)
            if cut is not None:
                task.uncancel()
                metrics.BODIES_CUT.labels(cut[0]).inc()
                raise RequestTimeout(cut[1], headers=CLOSE) from None
            raise
        finally:
            guard._reading.pop(task, None)
        self.window_bytes += len(message.get("body", b""))
        return message

    def verdict(self, now: float, waiting_since: float) -> tuple[str, str] | None:
        """(reason, detail) when this body, waiting for data since `waiting_since`, must be cut."""
        guard = self.guard
        if now - waiting_since > guard.timeout:
            return "stalled", f"The request body sent nothing for {guard.timeout:g} s"
        if guard.deadline and now - self.started > guard.deadline:
            return "deadline", f"The request body took longer than {guard.deadline:g} s"
        elapsed = now - self.window_started
        if guard.min_rate_bytes and elapsed >= guard.window:
            # Judged over the time that really passed (the sweep is late by up to a period).
            if now - self.started >= guard.grace and self.window_bytes * guard.window < (
                guard.min_rate_bytes * elapsed
            ):
                return "too_slow", (
                    f"The request body arrived slower than {guard.min_rate_bytes} bytes "
                    f"per {guard.window:g} s"
                )
            self.window_started, self.window_bytes = now, 0
        return None


class StallGuard:
    """Limits on how request bodies arrive (see the module); one per app."""

    def __init__(
        self,
        timeout: float,
        *,
        min_rate_bytes: int = 0,
        window: float = 5.0,
        grace: float = 5.0,
        deadline: float | None = None,
    ) -> None:
        self.timeout = timeout
        self.min_rate_bytes = min_rate_bytes
        self.window = window
        self.grace = grace
        self.deadline = deadline
        self.period = min(1.0, *(v / 4 for v in (timeout, window, deadline) if v))
        self._reading: dict[asyncio.Task[object], tuple[float, GuardedBody]] = {}
        self._expired: dict[asyncio.Task[object], tuple[str, str]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def body(self, receive: Receive) -> GuardedBody:
        """`receive` for one request, its body reads watched (call it like `receive`)."""
        return GuardedBody(self, receive)

    async def _sweep(self) -> None:
        """Judge the reads in progress every `period`, until a period passes with none (the
        next read starts another sweep). Not ending as soon as none is in progress keeps one
        sweeper for a busy service, instead of a new task for most requests: a body that has
        already arrived is read before a new sweeper first runs."""
        while True:
            await asyncio.sleep(self.period)
            if not self._reading:
                return
            now = time.monotonic()
            for task, (since, body) in list(self._reading.items()):
                if task in self._expired:
                    continue
                cut = body.verdict(now, since)
                if cut is not None and task.cancel():
                    self._expired[task] = cut


class BodyStream:
    """The request body as it arrives, straight from the ASGI `receive` (no async generator:
    asyncio registers each of those in a WeakSet, a measurable cost per request on a hot path).

    Each chunk is handed on as it arrives, so a route can refuse a request at its first bytes
    (load shedding before the body is read); a trickled upload's temp file is made only once
    its first 16 KiB arrived (`app.services.multipart.reader`), not per connection.

    RequestTimeout (408) when the body stalls or crawls (`app.api.stalls`: a slow client must
    not hold a connection and a temp file forever); ClientDisconnect when the client hangs up.
    """

    def __init__(self, receive: Receive, guard: StallGuard) -> None:
        self.receive = guard.body(receive)
        self.done = False

    def __aiter__(self) -> BodyStream:
        return self

    async def __anext__(self) -> bytes:
        while not self.done:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            self.done = not message.get("more_body", False)
            chunk: bytes = message.get("body", b"")
            if chunk:
                return chunk
        raise StopAsyncIteration
