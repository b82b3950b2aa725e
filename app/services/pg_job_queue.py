"""Contour jobs in scale-out mode: records in PostgreSQL, bytes in the object store, runs on
procrastinate (the same interface as the embedded `JobQueue`).

- **Records** live in the `contour_jobs` table (migration 0003): every replica reads any job.
- **Inputs and outputs** are content-addressed objects (`jobs/inputs/{key}`,
  `jobs/results/{key}`, key = sha256 of the canonical input); an output is published with
  `If-None-Match: *` (first writer wins).
- **Computed once per content.** A submit takes a transaction-scoped advisory lock on its key:
  a key with an unfinished job is joined (a free job record, no new run), a key with a
  published output is born completed, else a new lead job is deferred to procrastinate
  (`queueing_lock` = job id, `lock` = key). A run finishes every unfinished record of its key
  under the same lock.
- **At-least-once.** Workers heartbeat; each worker sweeps jobs whose worker's heartbeat is
  older than `job_stalled_after_seconds` back to `todo` (one sweeper at a time: an advisory
  lock). A redelivered run finds a published output and does not compute again; its owner is
  charged once (`subject=job:{id}`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from app.core.config import Settings
from app.core.errors import AppError, JobNotFound
from app.core.ids import is_uuid4
from app.core.threads import ThreadPool
from app.services.job_models import INTERNAL_ERROR_DETAIL, Job, JobError, JobStatus
from app.services.job_store import worker_id
from app.services.scheduler import LaneClient
from app.storage.objects import ObjectStore, job_key

logger = logging.getLogger("app.jobs")

QUEUE = "contour_jobs"
TASK = "contour_job"
SWEEP_LOCK_KEY = 727_215  # pg advisory lock of the stalled-job sweep
SCHEMA_LOCK_KEY = 727_216  # pg advisory lock of applying procrastinate's schema
RETRY_SECONDS = 2.0
RUN_ATTEMPTS = 10
RUN_RETRY_WAIT_SECONDS = 2
COLUMNS = (
    "job_id, status, content_key, owner, hold_id, error_code, error_detail, worker, created_at, updated_at"
)


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (`postgresql+asyncpg://...`) as a libpq conninfo URL."""
    scheme, rest = url.split("://", 1)
    return "postgresql://" + rest if scheme.startswith("postgresql") else url


def _job(row: tuple[Any, ...]) -> Job:
    job_id, status, key, owner, hold_id, code, detail, worker, created, updated = row
    error = JobError(code=code, detail=detail or "") if code else None
    return Job(
        job_id=job_id,
        status=JobStatus(status),
        content_key=key,
        owner=owner,
        hold_id=hold_id,
        error=error,
        worker=worker,
        created_at=created,
        updated_at=updated,
    )


class ProcrastinateJobQueue:
    """A `JobQueue` for scale-out mode (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        store: ObjectStore,
        runner: Callable[[bytes], bytes],
        *,
        run_pool: ThreadPool | LaneClient,
        on_finished: Callable[[Job], Awaitable[None]] | None = None,
        run_worker: bool | None = None,
    ) -> None:
        import procrastinate  # loaded only in scale-out mode

        self.settings = settings
        self.store = store
        self.worker = worker_id()
        self.run_worker = settings.job_worker_in_process if run_worker is None else run_worker
        self._dsn = libpq_url(settings.database)
        self._runner = runner
        self._run_pool = run_pool
        self._on_finished = on_finished
        self.app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(conninfo=self._dsn, min_size=1, max_size=8)
        )
        # A body that raised (database or S3 outage) is retried; a job's own failure is not an
        # exception (it is recorded as `failed`).
        retry = procrastinate.RetryStrategy(max_attempts=RUN_ATTEMPTS, wait=RUN_RETRY_WAIT_SECONDS)
        self.app.task(name=TASK, queue=QUEUE, retry=retry)(self._body)
        self._task: asyncio.Task[None] | None = None
        self._opened = False

    async def start(self) -> None:
        """Open the pool and, in the background (the database may be down), apply the engine's
        schema, then run a worker and the stalled sweep if this process runs one."""
        self._task = asyncio.create_task(self._main(), name="procrastinate")

    async def stop(self) -> None:
        """Stop the worker (after its running jobs finish) and the pool."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._opened:
            await self.app.close_async()
            self._opened = False

    async def _main(self) -> None:
        while True:
            try:
                if not self._opened:
                    await self.app.open_async()
                    self._opened = True
                await self._ensure_schema()
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("job engine not reachable (%s: %s); retrying", type(exc).__name__, exc)
                await asyncio.sleep(RETRY_SECONDS)
        if not self.run_worker:
            return
        sweeper = asyncio.create_task(self._sweep_loop(), name="procrastinate-sweep")
        try:
            await self.app.run_worker_async(
                queues=[QUEUE],
                name=self.worker,
                concurrency=self.settings.job_workers,
                update_heartbeat_interval=self.settings.job_heartbeat_seconds,
                stalled_worker_timeout=self.settings.job_stalled_after_seconds,
                fetch_job_polling_interval=self.settings.job_poll_interval_seconds,
                install_signal_handlers=False,  # a stop waits for the running jobs (threads)
            )
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper

    async def _ensure_schema(self) -> None:
        """Apply procrastinate's schema once per database (replicas race: an advisory lock)."""
        async with self._connection() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
            row = await (await conn.execute("SELECT to_regclass('procrastinate_jobs')")).fetchone()
            if row is not None and row[0] is not None:
                return
            await conn.execute(self.app.schema_manager.get_schema())
            logger.info("applied procrastinate's schema")

    async def _sweep_loop(self) -> None:
        """Retry the jobs of stalled workers, one sweeper at a time (procrastinate's recipe)."""
        import psycopg

        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._dsn, autocommit=True) as lock:
                    while True:
                        await asyncio.sleep(self.settings.job_sweep_interval_seconds)
                        got = await (
                            await lock.execute("SELECT pg_try_advisory_lock(%s)", (SWEEP_LOCK_KEY,))
                        ).fetchone()
                        if not got or not got[0]:
                            continue
                        try:
                            stalled = await self.app.job_manager.get_stalled_jobs(
                                seconds_since_heartbeat=self.settings.job_stalled_after_seconds
                            )
                            for job in stalled:
                                with contextlib.suppress(Exception):  # finished or retried meanwhile
                                    await self.app.job_manager.retry_job(job)
                                    logger.warning("retried stalled job %s (%s)", job.id, job.task_kwargs)
                        finally:
                            await lock.execute("SELECT pg_advisory_unlock(%s)", (SWEEP_LOCK_KEY,))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("stalled-job sweep failed (%s: %s); retrying", type(exc).__name__, exc)
                await asyncio.sleep(RETRY_SECONDS)

    def _connection(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """A pooled psycopg connection; its transaction commits when the block exits."""
        return self.app.connector.pool.connection()  # type: ignore[attr-defined]

    def admit(self) -> None:
        """Nothing to refuse ahead: the queue lives in PostgreSQL (no per-replica bound)."""

    async def submit(self, data: bytes, *, owner: str = "anonymous", hold_id: str | None = None) -> Job:
        """Accept a job for `data` (recorded on return); only a job that starts new work keeps
        `hold_id` (a cached or joined job is free)."""
        data = bytes(data)
        key = hashlib.sha256(data).hexdigest()
        cached = await self.store.stat(job_key("results", key)) is not None
        if not cached:
            await self.store.create(job_key("inputs", key), data)
        now = datetime.now(UTC)
        job_id = str(uuid.uuid4())
        self._require_open()
        async with self._connection() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (key,))
            row = await (
                await conn.execute(
                    "SELECT status FROM contour_jobs WHERE content_key = %s"
                    " AND status IN ('pending', 'running') LIMIT 1",
                    (key,),
                )
            ).fetchone()
            if row is not None:
                status, lead, how = JobStatus(row[0]), False, "joined in-flight work"
            elif cached or await self.store.stat(job_key("results", key)) is not None:
                status, lead, how = JobStatus.COMPLETED, False, "completed from the result cache"
            else:
                status, lead, how = JobStatus.PENDING, True, "queued"
            job = Job(
                job_id=job_id,
                status=status,
                created_at=now,
                updated_at=now,
                content_key=key,
                owner=owner,
                hold_id=hold_id if lead else None,
                worker=None,
            )
            await conn.execute(
                f"INSERT INTO contour_jobs ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, NULL, NULL, NULL, %s, %s)",
                (job_id, status.value, key, owner, job.hold_id, now, now),
            )
        if lead:
            try:
                await (
                    self.app.tasks[TASK]
                    .configure(queueing_lock=job_id, lock=key)
                    .defer_async(job_id=job_id, key=key)
                )
            except BaseException:
                async with self._connection() as conn:
                    await conn.execute("DELETE FROM contour_jobs WHERE job_id = %s", (job_id,))
                raise
        logger.info("job %s %s (key %s)", job_id, how, key[:12])
        return job

    def _require_open(self) -> None:
        if not self._opened:
            from app.core.errors import DatabaseUnavailable

            raise DatabaseUnavailable("The job engine is not connected yet")

    async def get(self, job_id: str) -> Job:
        """The current state of a job; JobNotFound (404) if there is none."""
        if not isinstance(job_id, str) or not is_uuid4(job_id):
            raise JobNotFound()
        self._require_open()
        async with self._connection() as conn:
            row = await (
                await conn.execute(f"SELECT {COLUMNS} FROM contour_jobs WHERE job_id = %s", (job_id.lower(),))
            ).fetchone()
        if row is None:
            raise JobNotFound()
        return _job(row)

    async def result(self, job_id: str) -> bytes | None:
        """The output bytes of a completed job; None while it is not completed (or failed)."""
        job = await self.get(job_id)
        if job.status != JobStatus.COMPLETED:
            return None
        stored = await self.store.read(job_key("results", job.content_key))
        return stored.data if stored is not None else None

    async def erase_owner(self, owner: str) -> int:
        """Forget every job record of `owner` (account erasure)."""
        self._require_open()
        async with self._connection() as conn:
            cursor = await conn.execute("DELETE FROM contour_jobs WHERE owner = %s", (owner,))
            return cursor.rowcount

    async def _body(self, job_id: str, key: str) -> None:
        """The procrastinate task: compute (unless published) and finish every job of `key`."""
        async with self._connection() as conn:
            await conn.execute(
                "UPDATE contour_jobs SET status = 'running', worker = %s, updated_at = %s"
                " WHERE content_key = %s AND status IN ('pending', 'running')",
                (self.worker, datetime.now(UTC), key),
            )
        error = await self._compute(key)
        status = JobStatus.FAILED if error is not None else JobStatus.COMPLETED
        now = datetime.now(UTC)
        async with self._connection() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (key,))
            rows = await (
                await conn.execute(
                    "UPDATE contour_jobs SET status = %s, error_code = %s, error_detail = %s, updated_at = %s"
                    f" WHERE content_key = %s AND status IN ('pending', 'running') RETURNING {COLUMNS}",
                    (status.value, error.code if error else None, error.detail if error else None, now, key),
                )
            ).fetchall()
        for row in rows:
            if self._on_finished is not None:
                try:
                    await self._on_finished(_job(row))
                except Exception:
                    logger.exception("finishing hook failed for job %s", row[0])
        logger.info("key %s %s for %d job(s) (lead %s)", key[:12], status.value, len(rows), job_id)

    async def _compute(self, key: str) -> JobError | None:
        if await self.store.stat(job_key("results", key)) is not None:
            return None  # published by an earlier run (before its worker died)
        stored = await self.store.read(job_key("inputs", key))
        if stored is None:
            return JobError(code="job_input_missing", detail="The job's input was lost; submit it again")
        if self.settings.job_run_delay_seconds:
            await asyncio.sleep(self.settings.job_run_delay_seconds)
        try:
            output = await self._run_pool.run(self._runner, stored.data)
        except AppError as exc:
            return JobError(code=exc.code, detail=exc.detail)
        except Exception:
            logger.exception("job runner failed on key %s", key[:12])
            return JobError(code="internal_error", detail=INTERNAL_ERROR_DETAIL)
        await self.store.create(job_key("results", key), bytes(output))  # first writer wins
        return None
