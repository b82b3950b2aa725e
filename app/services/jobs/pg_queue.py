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
- **Bounded.** At most `job_max_pending` content keys wait (pending records, all replicas):
  beyond that `admit` and `submit` refuse new work (`QueueFull`, 503 with Retry-After), the
  check repeated under a global advisory lock when a submit would start new work.
- **Maintained** (`app.services.jobs.pg_maintenance`, every process, one at a time under an
  advisory lock): retention, records no queued job carries re-deferred, orphaned objects.
- **Outages.** A database that cannot be reached is `DatabaseUnavailable` (503), never a 500;
  `check` is the readiness check of the engine's pool.
- **Stopping.** `stop` cancels the engine's task, and also tells each loop and worker to end
  by itself (`_stopping`, procrastinate's own `Worker.stop`): a cancel that a library call
  swallows (Python 3.11's `asyncio.wait_for` can, when what it waits for ends at that moment)
  must not leave a worker running and the process unable to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from app.core.errors import AppError, DatabaseUnavailable, JobNotFound, QueueFull
from app.core.ids import is_uuid4
from app.core.tasks import cancel_and_wait
from app.core.threads import ThreadPool
from app.services.analysis.scheduler import LaneClient
from app.services.jobs.file_store import worker_id
from app.services.jobs.records import INTERNAL_ERROR_DETAIL, Job, JobError, JobStatus
from app.services.jobs.settings import JobSettings
from app.storage.objects import ObjectStore, job_key

logger = logging.getLogger("app.jobs")

QUEUE = "contour_jobs"
TASK = "contour_job"
SWEEP_LOCK_KEY = 727_215  # pg advisory lock of the stalled-job sweep
SCHEMA_LOCK_KEY = 727_216  # pg advisory lock of applying procrastinate's schema
MAINTENANCE_LOCK_KEY = 727_217  # pg advisory lock of the maintenance pass
ADMIT_LOCK_KEY = 727_218  # pg advisory xact lock: count waiting work and add to it atomically
RETRY_SECONDS = 2.0
RUN_ATTEMPTS = 10
RUN_RETRY_WAIT_SECONDS = 2
COLUMNS = (
    "job_id, status, content_key, owner, hold_id, error_code, error_detail, worker, created_at, updated_at,"
    " reused_from, reused_distance"
)


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (`postgresql+asyncpg://...`) as a libpq conninfo URL."""
    scheme, rest = url.split("://", 1)
    return "postgresql://" + rest if scheme.startswith("postgresql") else url


def _job(row: tuple[Any, ...]) -> Job:
    job_id, status, key, owner, hold_id, code, detail, worker, created, updated, reused, distance = row
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
        reused_from=reused,
        reused_distance=distance,
    )


class ProcrastinateJobQueue:
    """A `JobQueue` for scale-out mode (see the module docstring)."""

    def __init__(
        self,
        settings: JobSettings,
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
        wait = settings.database_connect_timeout_seconds
        self.app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(
                conninfo=self._dsn,
                min_size=1,
                max_size=8,
                timeout=wait,  # a pooled connection is waited for this long (then 503)
                kwargs={"connect_timeout": max(1, math.ceil(wait))},
            )
        )
        self._run_seconds = 0.0  # moving average of a run in this process (Retry-After)
        # A body that raised (database or S3 outage) is retried; a job's own failure is not an
        # exception (it is recorded as `failed`).
        retry = procrastinate.RetryStrategy(max_attempts=RUN_ATTEMPTS, wait=RUN_RETRY_WAIT_SECONDS)
        self.app.task(name=TASK, queue=QUEUE, retry=retry)(self._body)
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()  # set by `stop`: every loop of `_main` ends
        self._workers: set[Any] = set()  # procrastinate workers running (to stop them)
        self._opened = False
        self._extra_queues: dict[str, int] = {}  # further queues this process works: concurrency

    def add_queue(self, queue: str, concurrency: int) -> None:
        """Work `queue` too, wherever this process runs a worker: a worker of its own with its own
        `concurrency`, so that its tasks never wait behind contour jobs (nor hold them up).
        Call before `start`."""
        self._extra_queues[queue] = concurrency

    async def start(self) -> None:
        """Open the pool and, in the background (the database may be down), apply the engine's
        schema, then run a worker and the stalled sweep if this process runs one."""
        self._stopping = asyncio.Event()  # of this loop
        self._task = asyncio.create_task(self._main(), name="procrastinate")

    async def stop(self) -> None:
        """Stop the workers (after their running jobs finish) and the pool."""
        self._stopping.set()
        for worker in list(self._workers):
            worker.stop()  # graceful: no new job, the running ones finish
        await cancel_and_wait(self._task)
        self._task = None
        if self._opened:
            await self.app.close_async()
            self._opened = False

    async def _main(self) -> None:
        while not self._stopping.is_set():
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
                await self._pause(RETRY_SECONDS)
        if self._stopping.is_set():
            return
        from app.services.jobs.pg_maintenance import maintain

        maintainer = asyncio.create_task(
            self._locked_loop(
                MAINTENANCE_LOCK_KEY,
                self.settings.job_maintenance_interval_seconds,
                lambda: maintain(self),
                "job maintenance",
            ),
            name="procrastinate-maintenance",
        )
        loops = [maintainer]
        for queue, concurrency in self._extra_queues.items() if self.run_worker else ():
            loops.append(asyncio.create_task(self._work(queue, concurrency), name=f"procrastinate-{queue}"))
        if self.run_worker:
            loops.append(
                asyncio.create_task(
                    self._locked_loop(
                        SWEEP_LOCK_KEY,
                        self.settings.job_sweep_interval_seconds,
                        self._retry_stalled,
                        "stalled-job sweep",
                    ),
                    name="procrastinate-sweep",
                )
            )
        try:
            if self.run_worker:
                await self._work(QUEUE, self.settings.job_workers)
            await asyncio.gather(*loops)  # until stopped (each loop ends when stopping)
        finally:
            await cancel_and_wait(*loops)

    async def _work(self, queue: str, concurrency: int) -> None:
        """A procrastinate worker on `queue` (restarted when the database comes back) until stopped."""
        # What `App.run_worker_async` runs (the App has no worker defaults nor import paths:
        # its tasks are registered here), built here so that `stop` can stop it
        from procrastinate.worker import Worker

        while not self._stopping.is_set():
            worker = Worker(
                app=self.app,
                queues=[queue],
                name=self.worker if queue == QUEUE else f"{self.worker}/{queue}",
                concurrency=concurrency,
                update_heartbeat_interval=self.settings.job_heartbeat_seconds,
                stalled_worker_timeout=self.settings.job_stalled_after_seconds,
                fetch_job_polling_interval=self.settings.job_poll_interval_seconds,
                install_signal_handlers=False,  # a stop waits for the running jobs (threads)
            )
            self._workers.add(worker)
            try:
                await worker.run()  # type: ignore[no-untyped-call]  # procrastinate leaves it untyped
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database went away: start again once it is back
                logger.warning("%s worker stopped (%s: %s); restarting", queue, type(exc).__name__, exc)
            finally:
                self._workers.discard(worker)
            await self._pause(RETRY_SECONDS)

    async def _ensure_schema(self) -> None:
        """Apply procrastinate's schema once per database (replicas race: an advisory lock)."""
        async with self.connection() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
            row = await (await conn.execute("SELECT to_regclass('procrastinate_jobs')")).fetchone()
            if row is not None and row[0] is not None:
                return
            await conn.execute(self.app.schema_manager.get_schema())
            logger.info("applied procrastinate's schema")

    async def _locked_loop(
        self, lock_key: int, interval: float, work: Callable[[], Awaitable[object]], what: str
    ) -> None:
        """Every `interval`, run `work` if this process gets the session advisory lock `lock_key`
        (one process at a time, whatever the number of replicas and workers)."""
        import psycopg

        timeout = max(1, math.ceil(self.settings.database_connect_timeout_seconds))
        while not self._stopping.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._dsn, autocommit=True, connect_timeout=timeout
                ) as lock:
                    while not self._stopping.is_set():
                        await self._pause(interval)
                        if self._stopping.is_set():
                            break
                        got = await (
                            await lock.execute("SELECT pg_try_advisory_lock(%s)", (lock_key,))
                        ).fetchone()
                        if not got or not got[0]:
                            continue
                        try:
                            await work()
                        finally:
                            await lock.execute("SELECT pg_advisory_unlock(%s)", (lock_key,))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("%s failed (%s: %s); retrying", what, type(exc).__name__, exc)
                await self._pause(RETRY_SECONDS)

    async def _pause(self, seconds: float) -> None:
        """Wait `seconds`, or less if the engine is stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _retry_stalled(self) -> None:
        """Retry the jobs of stalled workers (procrastinate's recipe)."""
        stalled = await self.app.job_manager.get_stalled_jobs(
            seconds_since_heartbeat=self.settings.job_stalled_after_seconds
        )
        for job in stalled:
            with contextlib.suppress(Exception):  # finished or retried meanwhile
                await self.app.job_manager.retry_job(job)
                logger.warning("retried stalled job %s (%s)", job.id, job.task_kwargs)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """A pooled psycopg connection, its transaction committed when the block exits;
        DatabaseUnavailable (503) when the database cannot be reached."""
        import psycopg
        import psycopg_pool

        self._require_open()
        try:
            async with self.app.connector.pool.connection() as conn:  # type: ignore[attr-defined]
                yield conn
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            raise DatabaseUnavailable(
                f"The job engine's database is unreachable ({type(exc).__name__})"
            ) from exc

    async def check(self) -> str | None:
        """Readiness of the engine's pool: None if a pooled connection answers, else why not."""
        if not self._opened:
            return "not connected yet (retrying)"
        try:
            async with (
                asyncio.timeout(self.settings.database_connect_timeout_seconds),
                self.connection() as conn,
            ):
                await conn.execute("SELECT 1")
        except Exception as exc:  # refused, timed out, lost: it cannot take or report jobs
            cause = exc.__cause__ if isinstance(exc, DatabaseUnavailable) and exc.__cause__ else exc
            return f"unreachable ({type(cause).__name__})"
        return None

    async def admit(self) -> None:
        """Refuse now (QueueFull, 503 with Retry-After) while `job_max_pending` content keys
        wait for a worker (pending records, every replica's): before a submit's body is read."""
        async with self.connection() as conn:
            self._refuse_if_full(await _waiting(conn))

    def _refuse_if_full(self, waiting: int) -> None:
        if waiting >= self.settings.job_max_pending:
            wait = waiting * self._run_seconds / self.settings.job_workers
            raise QueueFull(
                f"{waiting} jobs are already waiting; try again later",
                headers={"Retry-After": str(math.ceil(max(1.0, wait)))},
            )

    async def submit(self, data: bytes, *, owner: str = "anonymous", hold_id: str | None = None) -> Job:
        """Accept a job for `data` (recorded and deferred on return); QueueFull (503) when it
        would start new work while `job_max_pending` keys wait. Only a job that starts new work
        keeps `hold_id` (a cached or joined job is free)."""
        data = bytes(data)
        key = hashlib.sha256(data).hexdigest()
        cached = await self.store.stat(job_key("results", key)) is not None
        if not cached:
            await self.admit()  # before the input is stored: a refused submit leaves nothing
            await self.store.create(job_key("inputs", key), data)
        now = datetime.now(UTC)
        job_id = str(uuid.uuid4())
        async with self.connection() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (key,))
            row = await (
                await conn.execute(
                    "SELECT status FROM contour_jobs WHERE content_key = %s"
                    " AND status IN ('pending', 'running') LIMIT 1",
                    (key,),
                )
            ).fetchone()
            # Asked again under the key's lock: retention may have removed the objects meanwhile.
            if row is not None:
                status, lead, how = JobStatus(row[0]), False, "joined in-flight work"
            elif await self.store.stat(job_key("results", key)) is not None:
                status, lead, how = JobStatus.COMPLETED, False, "completed from the result cache"
            else:
                status, lead, how = JobStatus.PENDING, True, "queued"
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADMIT_LOCK_KEY,))
                try:
                    self._refuse_if_full(await _waiting(conn))
                except QueueFull:
                    await self._drop_objects_if_unreferenced(conn, key)
                    raise
                if await self.store.stat(job_key("inputs", key)) is None:
                    await self.store.create(job_key("inputs", key), data)
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
                f"INSERT INTO contour_jobs ({COLUMNS})"
                " VALUES (%s, %s, %s, %s, %s, NULL, NULL, NULL, %s, %s, NULL, NULL)",
                (job_id, status.value, key, owner, job.hold_id, now, now),
            )
        if lead:
            try:
                await self.defer(job_id, key)
            except BaseException:
                # Not accepted. If this DELETE fails too (the database went away), maintenance
                # re-defers the record later, free of charge (it was never deferred).
                with contextlib.suppress(Exception):
                    async with self.connection() as conn:
                        await conn.execute("DELETE FROM contour_jobs WHERE job_id = %s", (job_id,))
                raise
        logger.info("job %s %s (key %s)", job_id, how, key[:12])
        return job

    async def known(self, data: bytes) -> bool:
        """Whether the content `data` has a published result or an unfinished job."""
        key = hashlib.sha256(bytes(data)).hexdigest()
        if await self.store.stat(job_key("results", key)) is not None:
            return True
        async with self.connection() as conn:
            cursor = await conn.execute(
                "SELECT 1 FROM contour_jobs WHERE content_key = %s"
                " AND status IN ('pending', 'running') LIMIT 1",
                (key,),
            )
            return await cursor.fetchone() is not None

    async def adopt(self, key: str, *, owner: str, reused_from: str, distance: int) -> Job | None:
        """A job born completed with the published output of content `key` (perceptual reuse:
        `reused_from` and `distance` say whose and how near), recorded on return; None when
        `key` has no output (still running, failed, or removed by retention)."""
        now = datetime.now(UTC)
        job_id = str(uuid.uuid4())
        async with self.connection() as conn:
            # Under the key's lock: retention and erasure remove its objects under it too
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (key,))
            if await self.store.stat(job_key("results", key)) is None:
                return None
            await conn.execute(
                f"INSERT INTO contour_jobs ({COLUMNS})"
                " VALUES (%s, 'completed', %s, %s, NULL, NULL, NULL, NULL, %s, %s, %s, %s)",
                (job_id, key, owner, now, now, reused_from, distance),
            )
        logger.info("job %s reused key %s (job %s, distance %d)", job_id, key[:12], reused_from, distance)
        return Job(
            job_id=job_id,
            status=JobStatus.COMPLETED,
            created_at=now,
            updated_at=now,
            content_key=key,
            owner=owner,
            reused_from=reused_from,
            reused_distance=distance,
        )

    async def defer(self, job_id: str, key: str) -> bool:
        """Queue the run of `key` led by `job_id` (`queueing_lock` = job id: never queued twice
        while it waits); False if it was already waiting."""
        import procrastinate.exceptions as errors

        try:
            await (
                self.app.tasks[TASK]
                .configure(queueing_lock=job_id, lock=key)
                .defer_async(job_id=job_id, key=key)
            )
        except errors.AlreadyEnqueued:
            return False
        except errors.ConnectorException as exc:
            raise DatabaseUnavailable(f"The job engine's database is unreachable ({exc})") from exc
        return True

    async def drop_key(self, key: str) -> bool:
        """Remove the input and output objects of `key` unless a record still refers to it
        (under the key's lock, so a submit of the same content waits); whether they went."""
        async with self.connection() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (key,))
            return await self._drop_objects_if_unreferenced(conn, key)

    async def _drop_objects_if_unreferenced(self, conn: Any, key: str) -> bool:
        """With the key's lock held on `conn`: delete its objects if no record names it."""
        cursor = await conn.execute("SELECT 1 FROM contour_jobs WHERE content_key = %s LIMIT 1", (key,))
        if await cursor.fetchone() is not None:
            return False
        await self.store.delete(job_key("inputs", key))
        await self.store.delete(job_key("results", key))
        # Its perceptual hashes (contour job reuse) would only point at a result that is gone.
        await conn.execute("DELETE FROM contour_job_hashes WHERE content_key = %s", (key,))
        return True

    async def forgo_charge(self, job_id: str) -> None:
        """Run `job_id` free of charge: its credit hold is dropped from the record and given
        back (`on_finished` with the job still unfinished settles it uncharged)."""
        async with self.connection() as conn:
            row = await (
                await conn.execute(
                    "UPDATE contour_jobs c SET hold_id = NULL FROM (SELECT job_id, hold_id"
                    " FROM contour_jobs WHERE job_id = %s FOR UPDATE) old"
                    " WHERE c.job_id = old.job_id AND old.hold_id IS NOT NULL"
                    " RETURNING c.job_id, c.status, c.content_key, c.owner, old.hold_id, c.error_code,"
                    " c.error_detail, c.worker, c.created_at, c.updated_at, c.reused_from, c.reused_distance",
                    (job_id,),
                )
            ).fetchone()
        if row is not None and self._on_finished is not None:
            await self._on_finished(_job(row))

    def _require_open(self) -> None:
        if not self._opened:
            raise DatabaseUnavailable("The job engine is not connected yet")

    async def get(self, job_id: str) -> Job:
        """The current state of a job; JobNotFound (404) if there is none."""
        if not isinstance(job_id, str) or not is_uuid4(job_id):
            raise JobNotFound()
        async with self.connection() as conn:
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
        """Forget every job of `owner` (account erasure): records, then the input and output
        objects no other record refers to; how many records. Work already running finishes
        unrecorded (its output object is then an orphan, removed by maintenance by age)."""
        async with self.connection() as conn:
            cursor = await conn.execute(
                "DELETE FROM contour_jobs WHERE owner = %s RETURNING content_key", (owner,)
            )
            keys = [row[0] for row in await cursor.fetchall()]
        for key in set(keys):
            await self.drop_key(key)
        return len(keys)

    async def _body(self, job_id: str, key: str) -> None:
        """The procrastinate task: compute (unless published) and finish every job of `key`."""
        async with self.connection() as conn:
            await conn.execute(
                "UPDATE contour_jobs SET status = 'running', worker = %s, updated_at = %s"
                " WHERE content_key = %s AND status IN ('pending', 'running')",
                (self.worker, datetime.now(UTC), key),
            )
        error = await self._compute(key)
        status = JobStatus.FAILED if error is not None else JobStatus.COMPLETED
        now = datetime.now(UTC)
        async with self.connection() as conn:
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
        started = time.perf_counter()
        try:
            output = await self._run_pool.run(self._runner, stored.data)
        except AppError as exc:
            return JobError(code=exc.code, detail=exc.detail)
        except Exception:
            logger.exception("job runner failed on key %s", key[:12])
            return JobError(code="internal_error", detail=INTERNAL_ERROR_DETAIL)
        self._run_seconds = 0.8 * self._run_seconds + 0.2 * (time.perf_counter() - started)
        await self.store.create(job_key("results", key), bytes(output))  # first writer wins
        return None


async def _waiting(conn: Any) -> int:
    """How many content keys have a pending record (units of work waiting for a worker)."""
    cursor = await conn.execute(
        "SELECT count(DISTINCT content_key) FROM contour_jobs WHERE status = 'pending'"
    )
    row = await cursor.fetchone()
    return int(row[0]) if row is not None else 0
