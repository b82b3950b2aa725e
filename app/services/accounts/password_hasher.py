"""Password hashing and verification under a small bound, with a queue limit of its own.

argon2id costs ~40 ms of CPU per hash on purpose, so a flood of logins could take every
core. Hashes run on PASSWORD_HASH_CONCURRENCY threads of their own; at most
PASSWORD_HASH_QUEUE_LIMIT callers wait for one, each for at most
PASSWORD_HASH_MAX_WAIT_SECONDS. Beyond that the call is refused at once with 503 and a
Retry-After estimated from the queue and the recent hash time: a flood is answered quickly
and the rest of the service (and /health) keeps its cores. The hashing threads also run at a
lower CPU priority (PASSWORD_HASH_NICE, Linux: a thread's own nice value), so that on a busy
machine the event loop is served first.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from app.core import metrics
from app.core.errors import ServiceUnavailable
from app.core.security import hash_password, verify_password
from app.core.threads import ThreadPool

T = TypeVar("T")
BUSY = "Too many logins are being checked; try again shortly"


_thread = threading.local()


def _at_low_priority(nice: int, fn: Callable[..., T], *args: object) -> T:
    """`fn(*args)`, on a thread whose nice value has been raised by `nice` (once per thread)."""
    if nice and not getattr(_thread, "niced", False) and sys.platform.startswith("linux"):
        _thread.niced = True  # elsewhere a thread has no nice value of its own: left alone
        with contextlib.suppress(OSError):
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    return fn(*args)


class PasswordHasher:
    """Hashes and verifies passwords on a bounded pool with a bounded, time-limited queue."""

    def __init__(self, concurrency: int, queue_limit: int, max_wait: float, nice: int = 0) -> None:
        self.concurrency = concurrency
        self.nice = nice
        self.queue_limit = queue_limit
        self.max_wait = max_wait
        self._pool = ThreadPool("password", concurrency)
        self._slots = asyncio.Semaphore(concurrency)
        self._waiting = 0
        self._hash_seconds = 0.05  # moving average of one hash's wall time

    def _busy(self) -> ServiceUnavailable:
        metrics.LOGIN_REFUSED.labels("hash_busy").inc()
        retry = math.ceil((self._waiting + 1) * self._hash_seconds / self.concurrency)
        return ServiceUnavailable(BUSY, headers={"Retry-After": str(max(1, retry))})

    def admit(self) -> None:
        """ServiceUnavailable (503) if a call now would be refused for a full queue: a check
        before any other work of a login (lockout bookkeeping, the user lookup)."""
        if self._slots.locked() and self._waiting >= self.queue_limit:
            raise self._busy()

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` on a hashing thread, after waiting for one within the queue's limits;
        ServiceUnavailable (503, Retry-After) when the queue is full or the wait too long."""
        if not self._slots.locked():
            await self._slots.acquire()  # a free thread: taken at once, without yielding
        elif self._waiting >= self.queue_limit:
            raise self._busy()
        else:
            self._waiting += 1
            try:
                await asyncio.wait_for(self._slots.acquire(), self.max_wait)
            except TimeoutError:
                raise self._busy() from None
            finally:
                self._waiting -= 1
        try:
            started = time.monotonic()
            result = await self._pool.run(_at_low_priority, self.nice, fn, *args)
            self._hash_seconds = 0.8 * self._hash_seconds + 0.2 * (time.monotonic() - started)
            return result
        finally:
            self._slots.release()

    async def hash(self, password: str) -> str:
        """An argon2id hash of `password`; ServiceUnavailable (503) when the queue is full."""
        return await self.run(hash_password, password)

    async def verify(self, password: str, password_hash: str | None) -> tuple[bool, str | None]:
        """(matches, upgraded hash or None), as `verify_password`; ServiceUnavailable (503) when
        the queue is full."""
        return await self.run(verify_password, password, password_hash)

    def shutdown(self) -> None:
        """Wait for running hashes and stop the threads."""
        self._pool.shutdown()
