"""Bounded worker-thread pools for blocking work (disk I/O, decoding, inference).

A hop is one queue put on the event loop and one `call_soon_threadsafe` from the worker
thread, which settles the caller's asyncio future. `loop.run_in_executor` measured ~100 µs of
CPU a hop here (its `concurrent.futures.Future`, lock and condition, `wrap_future`'s chained
callbacks, `shield`'s outer future), this ~35 µs; `anyio.to_thread.run_sync` ~87 µs on an
earlier machine. Like anyio's default, a hop is not abandoned when its caller is cancelled:
the caller waits for the thread to finish, so no file it was using is closed under it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

logger = logging.getLogger("app.threads")


class _Job(Generic[T]):
    """One call to run in the pool, and where its outcome goes (on the caller's loop)."""

    __slots__ = ("loop", "future", "context", "fn", "args", "kwargs", "settled", "finished")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.loop = loop
        self.future: asyncio.Future[T] = loop.create_future()
        # Copy the context so log lines from the thread keep the request id.
        self.context = contextvars.copy_context()
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.settled = False  # the thread has finished (set on the loop)
        self.finished: asyncio.Future[None] | None = None  # awaited by a cancelled caller

    def run(self) -> None:
        """Worker thread: call the function, hand the outcome to the loop."""
        result: Any = None
        error: BaseException | None = None
        try:
            result = self.context.run(self.fn, *self.args, **self.kwargs)
        except BaseException as exc:  # the caller gets it, whatever it is
            error = exc
        try:
            self.loop.call_soon_threadsafe(self.settle, result, error)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            logger.debug("thread pool: a call finished after its event loop closed")

    def settle(self, result: T, error: BaseException | None) -> None:
        """Event loop: the outcome to the caller (unless it was cancelled), and the thread's end
        to a cancelled caller waiting for it."""
        self.settled = True
        if self.finished is not None and not self.finished.done():
            self.finished.set_result(None)
        if self.future.done():
            return
        if error is None:
            self.future.set_result(result)
        else:
            self.future.set_exception(error)


class ThreadPool:
    """A named pool of at most `max_workers` threads, started as the work needs them."""

    def __init__(self, name: str, max_workers: int) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.name = name
        self.max_workers = max_workers
        self._queue: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        # Every queued job has its thread: an idle one it claimed, one started for it, or (the
        # backlog) the next one to finish
        self._idle = 0
        self._backlog = 0
        self._lock = threading.Lock()
        self._closed = False

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(*args, **kwargs)` in the pool and return its result."""
        job = _Job(asyncio.get_running_loop(), fn, args, kwargs)
        self._submit(job)
        try:
            return await job.future
        except asyncio.CancelledError:
            # Let the thread finish before the caller's clean-up runs, then stay cancelled.
            if not job.settled:
                job.finished = job.loop.create_future()
                while not job.finished.done():
                    try:
                        await asyncio.shield(job.finished)
                    except asyncio.CancelledError:
                        continue
            raise

    def _submit(self, job: _Job[Any]) -> None:
        """Queue `job` for an idle thread, a new one (below `max_workers`), or else the first
        thread to finish its job."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"thread pool {self.name!r} is shut down")
            if self._idle:
                self._idle -= 1
            elif len(self._threads) < self.max_workers:
                thread = threading.Thread(
                    target=self._work, name=f"{self.name}_{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            else:
                self._backlog += 1
            self._queue.put(job)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            job.run()
            with self._lock:
                if self._backlog:
                    self._backlog -= 1  # the job waiting for a thread is this thread's next
                else:
                    self._idle += 1

    def shutdown(self) -> None:
        """Run what is queued and running, then stop the threads (waits for them)."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        for thread in threads:
            thread.join()
