"""Stalled request bodies are cut: a read that waits longer than BODY_READ_TIMEOUT_SECONDS for
the next chunk ends with RequestTimeout (408).

One sweeping task watches every read in progress (a dict entry per read), instead of a timer
per chunk: asyncio keeps cancelled timers in its heap until they would have fired, and with a
timer per chunk that heap grows by thousands per second under load (measured: ~30 µs a read).
"""

from __future__ import annotations

import asyncio
import time

from starlette.types import Message, Receive

from app.core.errors import RequestTimeout


class StallGuard:
    """Reads of request bodies, each cut after `timeout` seconds without a message."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._reading: dict[asyncio.Task[object], float] = {}
        self._expired: set[asyncio.Task[object]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    async def receive(self, receive: Receive) -> Message:
        """`await receive()`, or RequestTimeout if it takes longer than the timeout."""
        task = asyncio.current_task()
        if task is None:  # not in a task (never the case under an ASGI server)
            return await receive()
        self._reading[task] = time.monotonic()
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        try:
            return await receive()
        except asyncio.CancelledError:
            if task in self._expired:
                self._expired.discard(task)
                task.uncancel()
                raise RequestTimeout(f"The request body sent nothing for {self.timeout:g} s") from None
            raise
        finally:
            self._reading.pop(task, None)

    async def _sweep(self) -> None:
        period = min(1.0, self.timeout / 4)
        while self._reading:
            await asyncio.sleep(period)
            now = time.monotonic()
            for task, since in list(self._reading.items()):
                if now - since > self.timeout and task not in self._expired:
                    self._expired.add(task)
                    task.cancel()
