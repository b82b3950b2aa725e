"""A small persistent job queue: submit opaque input bytes, poll a job id, read the output.

Guarantees:

- **Accepted means durable.** `submit` returns only after the input, then the job record, are
  on disk: an accepted job survives a crash or a SIGKILL. Nothing half-written is ever visible
  under a final name (temp file, fsync, rename/link; dead processes' temp files are swept).
- **Content addressed, computed once.** Jobs with the same input share a key. If
  `results/{key}` exists the new job is born `completed`; if a job with the key is pending or
  running in this process the new job joins that work. A result is published before any
  record says `completed`. Failures are not cached: a later submit of the same input runs again.
- **Restart safe.** `start()` re-queues every record that says `pending` or `running` (a
  crash mid-run), oldest first; a job whose result was published before the crash completes
  without running again. Unreadable or corrupt records are logged and skipped, never fatal.
- **Bounded.** At most `max_pending` units of work wait (`QueueFull`, 503 with Retry-After,
  beyond that; `admit` says so before a body is read); `submit` always accepts joining work
  and cache hits. At most `workers` runs at a time, each in `run_pool` (default: `pool`).
- **Retention** (optional `max_age_seconds`): at `start()`, finished records older than that
  are deleted, then every input and result no remaining record refers to (orphans included).
  Pending and running jobs never expire. Without it nothing is ever deleted.
- **The event loop never touches the disk** (`app.services.jobs.file_store`): disk work goes
  through `pool`, runs through `run_pool`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from app.core import metrics
from app.core.errors import JobNotFound, QueueFull
from app.core.ids import is_uuid4
from app.core.tasks import cancel_and_wait
from app.core.threads import ThreadPool
from app.services.analysis.scheduler import LaneClient
from app.services.jobs.file_store import JobStore, worker_id
from app.services.jobs.records import FINISHED, Job, JobError, JobStatus

logger = logging.getLogger("app.jobs")

__all__ = ["Job", "JobError", "JobQueue", "JobStatus"]


@dataclass
class _Work:
    """One unit of work in this process: a key and the jobs waiting on it."""

    key: str
    status: JobStatus = JobStatus.PENDING
    job_ids: list[str] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)  # set once its run is over and cleaned up


class JobQueue:
    """Persistent, content-addressed job queue run by a bounded set of asyncio workers."""

    def __init__(
        self,
        root: Path,
        pool: ThreadPool,
        runner: Callable[[bytes], bytes],
        *,
        workers: int,
        max_pending: int,
        run_pool: ThreadPool | LaneClient | None = None,
        max_age_seconds: float | None = None,
        on_finished: Callable[[Job], Awaitable[None]] | None = None,
    ) -> None:
        if workers < 1 or max_pending < 0:
            raise ValueError("workers must be at least 1, max_pending not negative")
        self.worker = worker_id()
        self.store = JobStore(root, self.worker)
        self._pool = pool  # disk work
        self._run_pool = run_pool or pool  # the runner
        self._run_seconds = 0.0  # moving average of a run (Retry-After)
        self._runner = runner
        self._on_finished = on_finished
        self._workers = workers
        self._max_pending = max_pending
        self._max_age_seconds = max_age_seconds
        self._reset()
        self._tasks: list[asyncio.Task[None]] = []

    def _reset(self) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._work: dict[str, _Work] = {}  # key -> work not finished yet
        # Jobs not yet finished on disk: the latest state (`_live`) and the last one persisted
        # (`_saved`, what `get` reports, so a client never sees a state a crash could take back).
        self._live: dict[str, Job] = {}
        self._saved: dict[str, Job] = {}
        self._locks: dict[str, asyncio.Lock] = {}  # job_id -> orders that job's record writes
        self._pending_units = 0

    @property
    def pending(self) -> int:
        """Units of work waiting for a worker."""
        return self._pending_units

    def admit(self) -> None:
        """Refuse now (QueueFull, 503 with Retry-After) while `max_pending` units of work wait."""
        if self._pending_units >= self._max_pending:
            wait = self._pending_units * self._run_seconds / self._workers
            raise QueueFull(
                f"{self._pending_units} jobs are already waiting; try again later",
                headers={"Retry-After": str(math.ceil(max(1.0, wait)))},
            )

    async def start(self) -> None:
        """Recover what a previous process left (see module docstring), then start the workers."""
        if self._tasks:
            raise RuntimeError("the job queue is already started")
        recovered = await self._pool.run(self.store.recover, self._max_age_seconds, self.worker)
        for job in recovered:
            if job.job_id in self._live:
                continue  # submitted to this instance before start(): already queued
            self._live[job.job_id] = self._saved[job.job_id] = job
            self._attach(job.job_id, job.content_key)
            metrics.JOBS.labels(JobStatus.PENDING.value).inc()
        if recovered:
            logger.warning("re-queued %d unfinished job(s) from %s", len(recovered), self.store.jobs_dir)
        self._tasks = [
            asyncio.create_task(self._worker_loop(), name=f"job-worker-{i}") for i in range(self._workers)
        ]

    async def stop(self) -> None:
        """Stop the workers. A run in progress finishes its thread; unfinished jobs stay on disk
        as pending/running and are recovered by the next `start()`."""
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(*tasks)
        self._reset()

    async def submit(self, data: bytes, *, owner: str = "anonymous", hold_id: str | None = None) -> Job:
        """Accept a job for `data`, persisted on return; QueueFull (503) if too many wait. Only a
        job that starts new work keeps `hold_id` (cached or joined work is free)."""
        data = bytes(data)
        key, cached = await self._pool.run(self.store.lookup, data)
        if not cached and key not in self._work:
            self.admit()  # before anything is written: a refused submit must not cost disk
        if not cached:
            await self._pool.run(self.store.store_input, key, data)
        # From here to the first await nothing else runs: decide and register atomically.
        now = datetime.now(UTC)
        job_id = str(uuid.uuid4())
        work = self._work.get(key)
        if work is None and not cached and self.store.has_result(key):
            cached = True  # work for this content finished while its input was being stored
        if work is not None:
            status, how = work.status, "joined in-flight work"
        elif cached:
            status, how = JobStatus.COMPLETED, "completed from the result cache"
        else:
            self.admit()  # again: other submits may have queued work meanwhile
            status, how = JobStatus.PENDING, "queued"
        job = Job(
            job_id=job_id,
            status=status,
            created_at=now,
            updated_at=now,
            content_key=key,
            owner=owner,
            hold_id=hold_id if work is None and not cached else None,
            worker=self.worker,
        )
        self._live[job_id] = job
        if status != JobStatus.COMPLETED:
            self._attach(job_id, key)  # joins `work`, or queues new work
        try:
            await self._save(job_id)
        except Exception:
            self._detach(job_id, key)  # the record is not on disk: the job was never accepted
            raise
        for state in {JobStatus.PENDING, status}:  # jobs_total: each job once pending (accepted),
            metrics.JOBS.labels(state.value).inc()  # at most once running, once finished
        logger.info("job %s %s (key %s)", job_id, how, key[:12])
        return job

    async def known(self, data: bytes) -> bool:
        """Whether the content `data` has a published result or work in flight here."""
        key, cached = await self._pool.run(self.store.lookup, bytes(data))
        return cached or key in self._work

    async def adopt(self, key: str, *, owner: str, reused_from: str, distance: int) -> Job | None:
        """A job born completed with the published result of content `key` (perceptual reuse:
        `reused_from` and `distance` say whose and how near), persisted on return; None when
        `key` has no result (still running, failed, or removed by retention)."""
        if not await self._pool.run(self.store.has_result, key):
            return None
        now = datetime.now(UTC)
        job = Job(
            job_id=str(uuid.uuid4()),
            status=JobStatus.COMPLETED,
            created_at=now,
            updated_at=now,
            content_key=key,
            owner=owner,
            worker=self.worker,
            reused_from=reused_from,
            reused_distance=distance,
        )
        await self._pool.run(self.store.write_record, job)
        for state in (JobStatus.PENDING, JobStatus.COMPLETED):
            metrics.JOBS.labels(state.value).inc()
        logger.info("job %s reused key %s (job %s, distance %d)", job.job_id, key[:12], reused_from, distance)
        return job

    async def get(self, job_id: str) -> Job:
        """The current state of a job; JobNotFound (404) if there is none."""
        if not isinstance(job_id, str) or not is_uuid4(job_id):
            raise JobNotFound()  # also keeps any other string from becoming a path
        job_id = job_id.lower()
        job = self._saved.get(job_id) or await self._pool.run(self.store.read_record, job_id)
        if job is None:
            raise JobNotFound()
        return job

    async def result(self, job_id: str) -> bytes | None:
        """The output bytes of a completed job; None while it is not completed (or failed)."""
        job = await self.get(job_id)
        completed = job.status == JobStatus.COMPLETED
        return await self._pool.run(self.store.read_result, job.content_key) if completed else None

    async def erase_owner(self, owner: str) -> int:
        """Forget every job of `owner` (account erasure): records, and the inputs and results
        nobody else's job refers to. Work already running for the owner finishes unrecorded,
        and is waited for, so that its output is gone too when this returns."""
        running = [
            work
            for work in self._work.values()
            if work.status == JobStatus.RUNNING
            and any(getattr(self._live.get(job_id), "owner", None) == owner for job_id in work.job_ids)
        ]
        for job_id, job in list(self._live.items()):
            if job.owner == owner:
                async with self._locks.setdefault(job_id, asyncio.Lock()):  # a write in flight lands first
                    self._live.pop(job_id, None)
                    self._saved.pop(job_id, None)
                self._locks.pop(job_id, None)
        for work in running:
            await work.done.wait()
        return await self._pool.run(self.store.erase_owner, owner)

    def _attach(self, job_id: str, key: str) -> None:
        """Put `job_id` on the work for `key`, queueing new work if there is none."""
        work = self._work.get(key)
        if work is None:
            work = self._work[key] = _Work(key)
            self._pending_units += 1
            self._queue.put_nowait(key)
        work.job_ids.append(job_id)

    def _detach(self, job_id: str, key: str) -> None:
        """Forget a job whose first record write failed; drop its work if nobody else waits on it."""
        self._live.pop(job_id, None)
        self._saved.pop(job_id, None)
        self._locks.pop(job_id, None)
        work = self._work.get(key)
        if work is None or job_id not in work.job_ids:
            return
        work.job_ids.remove(job_id)
        if not work.job_ids and work.status == JobStatus.PENDING:
            del self._work[key]  # its queue entry finds no work and is skipped
            self._pending_units -= 1

    async def _worker_loop(self) -> None:
        while True:
            key = await self._queue.get()
            try:
                await self._process(key)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Never let a worker die (a record write failed: disk full?). Forget the work here;
                # its records stay pending/running on disk and are recovered at the next start().
                logger.exception("job worker failed on key %s; its jobs resume at the next start", key[:12])
                work = self._work.pop(key, None)
                for job_id in work.job_ids if work is not None else ():
                    self._live.pop(job_id, None)
                    self._saved.pop(job_id, None)
                if work is not None:
                    work.done.set()

    async def _process(self, key: str) -> None:
        work = self._work.get(key)
        if work is None:
            return
        self._pending_units -= 1
        if not any(job_id in self._live for job_id in work.job_ids):  # every job was erased
            del self._work[key]
            await self._pool.run(self.store.drop_unreferenced, key)
            return
        work.status = JobStatus.RUNNING
        await self._transition(list(work.job_ids), JobStatus.RUNNING)
        started = time.perf_counter()
        error = await self._run_pool.run(self.store.execute, key, self._runner)
        self._run_seconds = 0.8 * self._run_seconds + 0.2 * (time.perf_counter() - started)
        # Synchronously: later submits see the published result (or start afresh after a failure).
        del self._work[key]
        if not any(job_id in self._live for job_id in work.job_ids):  # erased while it ran
            await self._pool.run(self.store.drop_unreferenced, key)
        work.done.set()
        status = JobStatus.FAILED if error is not None else JobStatus.COMPLETED
        finished = await self._transition(work.job_ids, status, error)
        if self._on_finished is not None:
            for job in finished:
                try:
                    await self._on_finished(job)
                except Exception:
                    logger.exception("finishing hook failed for job %s", job.job_id)
        ms = (time.perf_counter() - started) * 1000
        logger.info("key %s %s for %d job(s) in %.1f ms", key[:12], status.value, len(work.job_ids), ms)

    async def _transition(
        self, job_ids: list[str], status: JobStatus, error: JobError | None = None
    ) -> list[Job]:
        now = datetime.now(UTC)
        changed = []
        for job_id in job_ids:
            job = self._live.get(job_id)
            if job is not None:
                changed.append(job.model_copy(update={"status": status, "updated_at": now, "error": error}))
                metrics.JOBS.labels(status.value).inc()
                self._live[job_id] = changed[-1]
        await asyncio.gather(*(self._save(job_id) for job_id in job_ids))
        return changed

    async def _save(self, job_id: str) -> None:
        """Persist the latest snapshot of a live job; writes of one job never overtake each other."""
        lock = self._locks.setdefault(job_id, asyncio.Lock())
        async with lock:
            job = self._live.get(job_id)
            if job is None:
                return  # already finished and written by an earlier save
            await self._pool.run(self.store.write_record, job)
            self._saved[job_id] = job
            if job.status in FINISHED and self._live.get(job_id) is job:
                # Final and on disk: from now on `get` reads the record.
                del self._live[job_id], self._saved[job_id]
                self._locks.pop(job_id, None)
