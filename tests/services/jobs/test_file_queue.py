"""Persistent job queue: results, content-addressed caching, shared runs, errors, restarts, crashes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from app.core.errors import JobNotFound, NotFound, QueueFull, ServiceUnavailable, UndecodableImage
from app.core.threads import ThreadPool
from app.services.jobs.file_queue import JobQueue
from app.services.jobs.records import INTERNAL_ERROR_DETAIL, Job, JobStatus
from app.storage.atomic import TEMP_PREFIX

REPO_ROOT = Path(__file__).resolve().parents[3]


class Runner:
    """A thread-safe fake runner: records its inputs, can block on a gate, can raise."""

    def __init__(self, *, blocking: bool = False, fail: Exception | None = None) -> None:
        self.calls: list[bytes] = []
        self.started = threading.Event()
        self.gate = threading.Event()
        if not blocking:
            self.gate.set()
        self.fail = fail
        self._lock = threading.Lock()

    def __call__(self, data: bytes) -> bytes:
        with self._lock:
            self.calls.append(data)
        self.started.set()
        assert self.gate.wait(30), "test runner was never released"
        if self.fail is not None:
            raise self.fail
        return b"out:" + data


class Harness:
    """Builds queues over one root and one real thread pool; tears everything down in a safe order."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pool = ThreadPool("jobs-test", 4)
        self.runners: list[Runner] = []
        self.queues: list[JobQueue] = []

    def queue(
        self, runner: Runner | Callable[[bytes], bytes] | None = None, **options: Any
    ) -> tuple[JobQueue, Runner]:
        runner = runner if runner is not None else Runner()
        if isinstance(runner, Runner):
            self.runners.append(runner)
        options.setdefault("workers", 2)
        options.setdefault("max_pending", 100)
        queue = JobQueue(self.root, self.pool, runner, **options)
        self.queues.append(queue)
        return queue, runner  # type: ignore[return-value]

    async def close(self) -> None:
        for runner in self.runners:
            runner.gate.set()
        for queue in self.queues:
            await queue.stop()
        self.pool.shutdown()


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path / "jobs-root")
    yield h
    await h.close()


async def wait_for(queue: JobQueue, job_id: str, *statuses: JobStatus, timeout: float = 10) -> Job:
    """Poll until the job reaches one of `statuses`."""
    with anyio.fail_after(timeout):
        while True:
            job = await queue.get(job_id)
            if job.status in statuses:
                return job
            await anyio.sleep(0.005)


async def wait_started(runner: Runner, timeout: float = 10) -> None:
    with anyio.fail_after(timeout):
        while not runner.started.is_set():
            await anyio.sleep(0.005)


def record(root: Path, job_id: str) -> dict[str, Any]:
    return json.loads((root / "jobs" / f"{job_id}.json").read_bytes())


def rewrite_record(root: Path, job_id: str, **changes: Any) -> None:
    path = root / "jobs" / f"{job_id}.json"
    path.write_text(json.dumps({**record(root, job_id), **changes}))


DONE = (JobStatus.COMPLETED, JobStatus.FAILED)


# ---------------------------------------------------------------------------------------------
# Normal operation
# ---------------------------------------------------------------------------------------------


async def test_submit_completes_with_the_runners_output(harness: Harness) -> None:
    queue, runner = harness.queue(Runner(blocking=True))
    await queue.start()

    job = await queue.submit(b"hello")

    key = hashlib.sha256(b"hello").hexdigest()
    assert job.content_key == key
    assert uuid.UUID(job.job_id).version == 4
    assert job.status in (JobStatus.PENDING, JobStatus.RUNNING)
    assert job.error is None
    # Persisted before submit returned.
    assert record(harness.root, job.job_id)["status"] in ("pending", "running")
    assert (harness.root / "inputs" / key).read_bytes() == b"hello"

    await wait_for(queue, job.job_id, JobStatus.RUNNING)
    assert await queue.result(job.job_id) is None
    runner.gate.set()

    done = await wait_for(queue, job.job_id, *DONE)
    assert done.status == JobStatus.COMPLETED
    assert done.error is None
    assert done.created_at == job.created_at
    assert done.updated_at >= job.updated_at
    assert await queue.result(job.job_id) == b"out:hello"
    assert runner.calls == [b"hello"]
    on_disk = record(harness.root, job.job_id)
    assert on_disk["status"] == "completed"
    assert on_disk["error"] is None
    assert on_disk["content_key"] == key
    assert (harness.root / "results" / key).read_bytes() == b"out:hello"
    assert not [p for p in harness.root.rglob(f"{TEMP_PREFIX}*")]


async def test_same_input_twice_is_served_from_the_result_cache(harness: Harness) -> None:
    queue, runner = harness.queue()
    await queue.start()
    first = await queue.submit(b"same bytes")
    await wait_for(queue, first.job_id, JobStatus.COMPLETED)

    second = await queue.submit(b"same bytes")

    assert second.status == JobStatus.COMPLETED  # born completed: no queueing, no recompute
    assert second.job_id != first.job_id
    assert second.content_key == first.content_key
    assert record(harness.root, second.job_id)["status"] == "completed"
    assert await queue.result(second.job_id) == await queue.result(first.job_id) == b"out:same bytes"
    assert runner.calls == [b"same bytes"]


async def test_result_cache_survives_a_restart(harness: Harness) -> None:
    queue, runner = harness.queue()
    await queue.start()
    first = await queue.submit(b"persisted")
    await wait_for(queue, first.job_id, JobStatus.COMPLETED)
    await queue.stop()

    again, runner2 = harness.queue()
    await again.start()
    assert (await again.get(first.job_id)).status == JobStatus.COMPLETED
    second = await again.submit(b"persisted")
    assert second.status == JobStatus.COMPLETED
    assert await again.result(second.job_id) == b"out:persisted"
    assert runner.calls == [b"persisted"] and runner2.calls == []


async def test_concurrent_identical_submits_share_one_run(harness: Harness) -> None:
    queue, runner = harness.queue(Runner(blocking=True), workers=4)
    await queue.start()

    jobs = await asyncio.gather(*(queue.submit(b"popular") for _ in range(5)))
    await wait_started(runner)
    late = await queue.submit(b"popular")  # joins the run in progress
    assert late.status == JobStatus.RUNNING
    other = await queue.submit(b"another input")  # different key: its own run
    jobs.append(late)

    assert len({j.job_id for j in jobs}) == 6
    assert len({j.content_key for j in jobs}) == 1
    for job in jobs:
        assert (await queue.get(job.job_id)).status == JobStatus.RUNNING
    runner.gate.set()

    finished = [await wait_for(queue, j.job_id, *DONE) for j in jobs]
    assert {j.status for j in finished} == {JobStatus.COMPLETED}
    assert len({j.updated_at for j in finished}) == 1  # they completed together
    for job in jobs:
        assert await queue.result(job.job_id) == b"out:popular"
        assert record(harness.root, job.job_id)["status"] == "completed"
    await wait_for(queue, other.job_id, JobStatus.COMPLETED)
    assert sorted(runner.calls) == [b"another input", b"popular"]


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


async def test_app_error_from_the_runner_fails_the_job_with_its_code(harness: Harness) -> None:
    queue, runner = harness.queue(Runner(fail=UndecodableImage("The bytes are not an image")))
    await queue.start()

    job = await queue.submit(b"garbage")
    done = await wait_for(queue, job.job_id, *DONE)

    assert done.status == JobStatus.FAILED
    assert done.error is not None
    assert (done.error.code, done.error.detail) == ("undecodable_image", "The bytes are not an image")
    assert await queue.result(job.job_id) is None
    assert record(harness.root, job.job_id)["error"] == {
        "code": "undecodable_image",
        "detail": "The bytes are not an image",
    }
    assert not (harness.root / "results" / job.content_key).exists()

    # Failures are not cached: the same input runs again.
    retry = await queue.submit(b"garbage")
    assert retry.status == JobStatus.PENDING
    await wait_for(queue, retry.job_id, JobStatus.FAILED)
    assert runner.calls == [b"garbage", b"garbage"]


async def test_unexpected_exception_fails_with_a_generic_internal_error(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    queue, _ = harness.queue(Runner(fail=RuntimeError("secret /etc/shadow detail")))
    await queue.start()

    with caplog.at_level(logging.ERROR, logger="app.jobs"):
        job = await queue.submit(b"boom")
        done = await wait_for(queue, job.job_id, *DONE)

    assert done.status == JobStatus.FAILED
    assert done.error is not None
    assert done.error.code == "internal_error"
    assert done.error.detail == INTERNAL_ERROR_DETAIL
    assert "secret" not in json.dumps(record(harness.root, job.job_id))
    logged = [r for r in caplog.records if r.exc_info is not None]
    assert logged and "secret /etc/shadow detail" in str(logged[0].exc_info[1])


async def test_runner_returning_something_else_than_bytes_is_an_internal_error(harness: Harness) -> None:
    queue, _ = harness.queue(lambda data: {"not": "bytes"})  # type: ignore[arg-type, return-value]
    await queue.start()
    job = await queue.submit(b"x")
    done = await wait_for(queue, job.job_id, *DONE)
    assert done.error is not None and done.error.code == "internal_error"


async def test_failed_record_write_refuses_the_job_and_leaves_no_work(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue, runner = harness.queue()

    def disk_full(path: Path, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("app.services.jobs.file_store.atomic_write", disk_full)
    with pytest.raises(OSError):
        await queue.submit(b"doomed")
    monkeypatch.undo()

    assert queue.pending == 0
    assert not list((harness.root / "jobs").iterdir())
    await queue.start()
    job = await queue.submit(b"doomed")
    await wait_for(queue, job.job_id, JobStatus.COMPLETED)
    assert runner.calls == [b"doomed"]


@pytest.mark.parametrize(
    "job_id", [str(uuid.uuid4()), "not-a-uuid", "../../etc/passwd", str(uuid.uuid1()), ""]
)
async def test_unknown_job_is_not_found(harness: Harness, job_id: str) -> None:
    queue, _ = harness.queue()
    await queue.start()

    with pytest.raises(JobNotFound) as caught:
        await queue.get(job_id)
    assert isinstance(caught.value, NotFound)
    assert (caught.value.status, caught.value.code) == (404, "job_not_found")
    with pytest.raises(JobNotFound):
        await queue.result(job_id)


async def test_queue_full_refuses_new_work_but_not_shared_or_cached_work(harness: Harness) -> None:
    queue, runner = harness.queue(max_pending=2)  # not started: everything stays pending
    a = await queue.submit(b"a")
    b = await queue.submit(b"b")
    assert queue.pending == 2

    with pytest.raises(QueueFull) as caught:
        await queue.submit(b"c")
    assert isinstance(caught.value, ServiceUnavailable)
    assert (caught.value.status, caught.value.code) == (503, "queue_full")
    assert "waiting" in caught.value.detail

    a_again = await queue.submit(b"a")  # shares queued work: costs nothing, accepted
    assert a_again.status == JobStatus.PENDING
    assert len(list((harness.root / "jobs").iterdir())) == 3  # the refused job left no record

    await queue.start()
    for job in (a, b, a_again):
        await wait_for(queue, job.job_id, JobStatus.COMPLETED)
    assert queue.pending == 0
    c = await queue.submit(b"c")
    await wait_for(queue, c.job_id, JobStatus.COMPLETED)
    assert sorted(runner.calls) == [b"a", b"b", b"c"]


# ---------------------------------------------------------------------------------------------
# Restart safety
# ---------------------------------------------------------------------------------------------


async def test_submit_before_start_runs_once(harness: Harness) -> None:
    queue, runner = harness.queue()
    job = await queue.submit(b"early")
    await queue.start()  # recovery sees the record on disk but must not queue it twice
    await wait_for(queue, job.job_id, JobStatus.COMPLETED)
    await anyio.sleep(0.05)
    assert runner.calls == [b"early"]


async def test_restart_requeues_pending_jobs_in_submission_order(harness: Harness) -> None:
    crashed, crashed_runner = harness.queue()  # never started: a process that died before running them
    jobs = [await crashed.submit(data) for data in (b"one", b"two", b"three", b"one")]
    for job in jobs:
        assert record(harness.root, job.job_id)["status"] == "pending"
    del crashed  # abandoned

    queue, runner = harness.queue(workers=1)
    await queue.start()

    for job, data in zip(jobs, (b"one", b"two", b"three", b"one"), strict=True):
        assert (await wait_for(queue, job.job_id, *DONE)).status == JobStatus.COMPLETED
        assert await queue.result(job.job_id) == b"out:" + data
    assert runner.calls == [b"one", b"two", b"three"]  # oldest first; the repeated input ran once
    assert crashed_runner.calls == []


async def test_record_left_running_is_run_again(harness: Harness) -> None:
    crashed, _ = harness.queue()
    job = await crashed.submit(b"mid-run")
    # The process died while the runner was working: the record says running, no result exists.
    rewrite_record(harness.root, job.job_id, status="running")

    queue, runner = harness.queue()
    await queue.start()

    done = await wait_for(queue, job.job_id, *DONE)
    assert done.status == JobStatus.COMPLETED
    assert done.created_at == job.created_at
    assert runner.calls == [b"mid-run"]
    assert await queue.result(job.job_id) == b"out:mid-run"


async def test_stopped_mid_run_then_restart_uses_the_published_result(harness: Harness) -> None:
    queue, runner = harness.queue(Runner(blocking=True))
    await queue.start()
    job = await queue.submit(b"slow")
    await wait_started(runner)

    stopping = asyncio.create_task(queue.stop())
    await anyio.sleep(0.05)  # the worker is cancelled but waits for its thread
    runner.gate.set()  # the runner finishes and publishes its result; no status update follows
    await stopping
    assert record(harness.root, job.job_id)["status"] == "running"
    assert (harness.root / "results" / job.content_key).read_bytes() == b"out:slow"

    restarted, runner2 = harness.queue()
    await restarted.start()
    done = await wait_for(restarted, job.job_id, *DONE)
    assert done.status == JobStatus.COMPLETED
    assert await restarted.result(job.job_id) == b"out:slow"
    assert runner2.calls == []  # not recomputed
    assert runner.calls == [b"slow"]


async def test_start_skips_corrupt_records_and_sweeps_temp_files(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    crashed, _ = harness.queue()
    good = await crashed.submit(b"good")
    jobs_dir = harness.root / "jobs"
    garbage_id, wrong_id, partial_id = (str(uuid.uuid4()) for _ in range(3))
    (jobs_dir / f"{garbage_id}.json").write_bytes(b"\x00\xffnot json")
    (jobs_dir / f"{wrong_id}.json").write_text(json.dumps({**record(harness.root, good.job_id)}))
    (jobs_dir / f"{partial_id}.json").write_text('{"job_id": "' + partial_id + '", "status": "pend')
    (jobs_dir / "README.txt").write_text("not a job")
    stale = [harness.root / d / f"{TEMP_PREFIX}999999999-deadbeef" for d in ("jobs", "inputs", "results")]
    for path in stale:
        path.write_bytes(b"half")

    queue, runner = harness.queue()
    with caplog.at_level(logging.WARNING, logger="app.jobs"):
        await queue.start()

    assert (await wait_for(queue, good.job_id, *DONE)).status == JobStatus.COMPLETED
    assert runner.calls == [b"good"]
    assert not any(path.exists() for path in stale)
    for bad in (garbage_id, wrong_id, partial_id):
        with pytest.raises(JobNotFound):
            await queue.get(bad)
    assert "corrupt" in caplog.text


async def test_retention_removes_old_finished_jobs_only(harness: Harness) -> None:
    queue, _ = harness.queue()
    await queue.start()
    old = await queue.submit(b"old")
    fresh = await queue.submit(b"fresh")
    for job in (old, fresh):
        await wait_for(queue, job.job_id, JobStatus.COMPLETED)
    await queue.stop()
    long_ago = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    rewrite_record(harness.root, old.job_id, updated_at=long_ago)
    # An old job that never ran is not expired.
    waiting, _ = harness.queue()
    stuck = await waiting.submit(b"stuck")
    rewrite_record(harness.root, stuck.job_id, created_at=long_ago, updated_at=long_ago)
    orphan = harness.root / "inputs" / hashlib.sha256(b"refused").hexdigest()
    orphan.write_bytes(b"refused")
    hours_ago = time.time() - 7200
    os.utime(orphan, (hours_ago, hours_ago))
    # A recent input nobody refers to yet may be a live sibling worker's submit: it stays.
    recent = harness.root / "inputs" / hashlib.sha256(b"in flight").hexdigest()
    recent.write_bytes(b"in flight")

    restarted, runner = harness.queue(max_age_seconds=3600)
    await restarted.start()

    with pytest.raises(JobNotFound):
        await restarted.get(old.job_id)
    assert not (harness.root / "results" / old.content_key).exists()
    assert not (harness.root / "inputs" / old.content_key).exists()
    assert not orphan.exists() and recent.exists()
    assert await restarted.result(fresh.job_id) == b"out:fresh"
    assert (await wait_for(restarted, stuck.job_id, *DONE)).status == JobStatus.COMPLETED
    assert runner.calls == [b"stuck"]


def test_constructor_validates_its_limits(tmp_path: Path) -> None:
    pool = ThreadPool("jobs-test", 1)
    try:
        with pytest.raises(ValueError):
            JobQueue(tmp_path, pool, bytes, workers=0, max_pending=1)
        with pytest.raises(ValueError):
            JobQueue(tmp_path, pool, bytes, workers=1, max_pending=-1)
    finally:
        pool.shutdown()


# ---------------------------------------------------------------------------------------------
# A real crash: SIGKILL a process mid-run
# ---------------------------------------------------------------------------------------------

CRASHING_PROCESS = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path

    from app.core.threads import ThreadPool
    from app.services.jobs.file_queue import JobQueue


    def runner(data: bytes) -> bytes:
        time.sleep(3600)
        return data


    async def main() -> None:
        queue = JobQueue(Path(sys.argv[1]), ThreadPool("doomed", 2), runner, workers=1, max_pending=10)
        await queue.start()
        first = await queue.submit(b"first")
        second = await queue.submit(b"second")
        while (await queue.get(first.job_id)).status != "running":
            await asyncio.sleep(0.01)
        print(first.job_id, second.job_id, flush=True)
        await asyncio.sleep(3600)


    asyncio.run(main())
    """
)


@pytest.mark.slow
async def test_jobs_of_a_sigkilled_process_complete_after_restart(harness: Harness) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-c", CRASHING_PROCESS, str(harness.root)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    watchdog = threading.Timer(60, process.kill)
    watchdog.start()
    try:
        assert process.stdout is not None
        line = await anyio.to_thread.run_sync(process.stdout.readline)
        assert line, process.stderr.read().decode() if process.stderr else "no output"
        first_id, second_id = line.decode().split()
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=10) == -signal.SIGKILL
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()

    # Killed mid-run: one job recorded running, the other pending, no result.
    assert record(harness.root, first_id)["status"] == "running"
    assert record(harness.root, second_id)["status"] == "pending"
    assert not list((harness.root / "results").iterdir())

    queue, runner = harness.queue(workers=1)
    await queue.start()
    for job_id, data in ((first_id, b"first"), (second_id, b"second")):
        done = await wait_for(queue, job_id, *DONE)
        assert done.status == JobStatus.COMPLETED
        assert await queue.result(job_id) == b"out:" + data
    assert runner.calls == [b"first", b"second"]
    assert not [p for p in harness.root.rglob(f"{TEMP_PREFIX}*")]


# ---------------------------------------------------------------------------------------------
# Account erasure
# ---------------------------------------------------------------------------------------------


def files_of(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")
    )


async def test_erasure_waits_for_a_running_job_of_the_owner_and_leaves_nothing(harness: Harness) -> None:
    queue, runner = harness.queue(Runner())
    await queue.start()
    theirs = await queue.submit(b"kept", owner="user:2")
    await wait_for(queue, theirs.job_id, *DONE)
    kept = files_of(harness.root)
    runner.gate.clear()
    runner.started.clear()

    mine = await queue.submit(b"erased", owner="user:1")
    await wait_started(runner)
    erasing = asyncio.ensure_future(queue.erase_owner("user:1"))
    await asyncio.sleep(0.2)
    assert not erasing.done(), "erasure returned while the owner's job was still running"
    runner.gate.set()
    assert await asyncio.wait_for(erasing, 10) == 1
    # the run finished unrecorded: its output was never left behind
    assert files_of(harness.root) == kept
    with pytest.raises(JobNotFound):
        await queue.get(mine.job_id)


async def test_a_submit_whose_content_finished_while_it_stored_the_input_is_born_completed(
    harness: Harness,
) -> None:
    """Two submits of one content: the second stores its input while the first one's work runs
    and finishes. It must see the published result (completed, no second run), not queue anew."""
    queue, runner = harness.queue(Runner())
    await queue.start()
    store_input = queue.store.store_input
    first_done = threading.Event()
    calls: list[str] = []

    def slow_second_store(key: str, data: bytes) -> None:
        calls.append(key)
        if len(calls) == 2:  # the second submit: held until the first one's work is over
            assert first_done.wait(10)
        store_input(key, data)

    queue.store.store_input = slow_second_store  # type: ignore[method-assign]
    first = await queue.submit(b"same")
    second = asyncio.ensure_future(queue.submit(b"same"))
    await wait_for(queue, first.job_id, *DONE)
    first_done.set()
    job = await asyncio.wait_for(second, 10)
    assert job.status == JobStatus.COMPLETED
    assert len(runner.calls) == 1
