"""app.core.threads: a bounded thread pool whose hops keep the context and outlive cancellation."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Iterator

import pytest

from app.core.threads import ThreadPool

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


@pytest.fixture
def pool() -> Iterator[ThreadPool]:
    pool = ThreadPool("test-pool", max_workers=2)
    yield pool
    pool.shutdown()


async def test_runs_in_a_named_worker_thread_with_args(pool: ThreadPool) -> None:
    def work(a: int, *, b: int) -> tuple[int, str]:
        return a + b, threading.current_thread().name

    total, thread = await pool.run(work, 2, b=3)
    assert total == 5
    assert thread.startswith("test-pool") and thread != threading.current_thread().name


async def test_the_callers_context_travels_with_the_call(pool: ThreadPool) -> None:
    request_id.set("req-42")
    assert await pool.run(request_id.get) == "req-42"


async def test_an_exception_reaches_the_caller(pool: ThreadPool) -> None:
    def fail() -> None:
        raise LookupError("boom")

    with pytest.raises(LookupError, match="boom"):
        await pool.run(fail)


async def test_at_most_max_workers_run_at_once(pool: ThreadPool) -> None:
    lock = threading.Lock()
    running = [0]
    peak = [0]
    release = threading.Event()
    entered = threading.Semaphore(0)

    def work() -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        entered.release()
        release.wait(10)
        with lock:
            running[0] -= 1

    tasks = [asyncio.create_task(pool.run(work)) for _ in range(5)]
    await asyncio.to_thread(entered.acquire)
    await asyncio.to_thread(entered.acquire)
    assert not entered.acquire(timeout=0.2)  # a third never starts while two hold the pool
    release.set()
    await asyncio.gather(*tasks)
    assert peak[0] == 2


async def test_a_cancelled_caller_waits_for_its_thread_to_finish(pool: ThreadPool) -> None:
    started = threading.Event()
    release = threading.Event()
    finished = threading.Event()

    def work() -> None:
        started.set()
        release.wait(10)
        finished.set()

    task = asyncio.create_task(pool.run(work))
    await asyncio.to_thread(started.wait, 10)
    task.cancel()
    await asyncio.sleep(0.05)
    assert not task.done()  # still waiting for the thread, though cancelled
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished.is_set()


async def test_shutdown_waits_for_running_work() -> None:
    pool = ThreadPool("test-shutdown", max_workers=1)
    started = threading.Event()
    done = threading.Event()

    def work() -> None:
        started.set()
        threading.Event().wait(0.2)
        done.set()

    task = asyncio.create_task(pool.run(work))
    await asyncio.to_thread(started.wait, 10)
    pool.shutdown()  # blocks until the running call returns
    assert done.is_set()
    await task


async def test_up_to_max_workers_calls_run_at_once_again_and_again() -> None:
    # Each call has its thread at once: a new one below the limit, an idle one after that;
    # calls over the limit wait for the first thread that finishes.
    pool = ThreadPool("test-concurrency", max_workers=3)
    try:
        for calls in (3, 3, 5, 3):
            entered = threading.Semaphore(0)
            release = threading.Event()

            def work(entered: threading.Semaphore = entered, release: threading.Event = release) -> str:
                entered.release()
                release.wait(10)
                return threading.current_thread().name

            tasks = [asyncio.create_task(pool.run(work)) for _ in range(calls)]
            for _ in range(3):
                assert await asyncio.to_thread(entered.acquire, True, 10)
            assert not entered.acquire(timeout=0.1)  # never more than three at once
            release.set()
            names = await asyncio.gather(*tasks)
            assert len(names) == calls and len(set(names)) <= 3
    finally:
        pool.shutdown()


async def test_no_call_after_shutdown() -> None:
    pool = ThreadPool("test-closed", max_workers=1)
    assert await pool.run(lambda: 1) == 1
    pool.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        await pool.run(lambda: 2)
