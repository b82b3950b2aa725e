"""Job engines on PostgreSQL: kill -9 redelivery, enqueue latency and an empty job's round trip.

For each engine (procrastinate, SAQ's PostgreSQL queue) in its own throw-away database
(`jobbench_<pid>_<engine>` on TEST_POSTGRES_URL, dropped at the end):
- enqueue latency of N jobs to a queue no worker reads, against a one-row INSERT over the
  same driver (psycopg 3) as the baseline, in alternating rounds;
- an empty job's round trip: enqueue -> a worker ran it (the job body NOTIFYs; the client
  LISTENs), with two workers idle;
- dedup: the same key enqueued twice while the first is queued (procrastinate
  `queueing_lock`, SAQ job key);
- kill -9: two worker processes; a job that sleeps JOB_SECONDS is enqueued, the worker that
  started it is SIGKILLed KILL_AFTER seconds in, and the time until it starts again and
  completes on the other worker is measured; the killed worker is replaced before the next
  round; after the last round the script waits long enough for a late duplicate to show.
Every job body writes `start` / `done` rows (pid, PostgreSQL clock) to a `bench_runs`
table: "completed once vs twice" counts `done` rows per job.

The settings that bound redelivery are the module constants below and are reported.
procrastinate does not redeliver a stalled job by itself: its documented recipe is a
periodic task that retries `get_stalled_jobs()`; here each worker runs that sweep in a side
task every PROCRASTINATE["sweep_interval_s"], serialized by a PostgreSQL advisory lock so
that two sweepers never retry one job twice. SAQ's sweep is built in (worker timer), but a
job's heartbeat must be touched by the job itself: the body calls `job.update()` every
SAQ["touch_interval_s"].

    .venv/bin/python bench/job_engine.py [--engine procrastinate|saq|both] [--rounds 3]

Every process is on loopback and bounded in time (workers exit after WORKER_MAX_S).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import aclosing, suppress
from importlib import metadata
from pathlib import Path
from typing import Any

import harness as h
import psycopg

DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5433/postgres"
JOB_SECONDS = 6.0  # the slow job's duration
KILL_AFTER = 1.5  # seconds into the run when its worker is SIGKILLed
WORKER_MAX_S = 600.0  # a worker exits by itself after this long
WAIT_MAX_S = 90.0  # give up on one redelivery after this long
ENQUEUE_N = 100  # enqueues per latency round
ENQUEUE_ROUNDS = 3
ROUND_TRIPS = 30
SWEEP_LOCK_KEY = 727_215  # pg advisory lock of the procrastinate stalled-job sweep
PROCRASTINATE = {
    "update_heartbeat_interval": 1.0,  # worker heartbeat (library default 10)
    "stalled_after_s": 5.0,  # get_stalled_jobs(seconds_since_heartbeat), stalled_worker_timeout (30)
    "sweep_interval_s": 1.0,  # how often each worker looks for stalled jobs (docs: a periodic task)
    "fetch_job_polling_interval": 1.0,  # a retried job is not NOTIFYed: polled (default 5)
    "concurrency": 2,
}
SAQ = {
    "heartbeat_s": 5,  # Job.heartbeat: stuck when not touched for this long (default 0 = off)
    "touch_interval_s": 1.0,  # the job body calls job.update() this often
    "sweep_timer_s": 1,  # Worker timers["sweep"] (default 60)
    "schedule_timer_s": 1,  # Worker timers["schedule"]: dequeue poll (default 1)
    "abort_wait_s": 5.0,  # sweep() waits this long for the stuck job's worker to abort it (fixed)
    "timeout_s": 120,  # Job.timeout (default 10 s would cut a long job)
    "retries": 3,  # Job.retries (default 1: a swept job would not be retried)
    "concurrency": 2,
}


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL (`postgresql+asyncpg://...`) as a libpq conninfo URL."""
    scheme, rest = url.split("://", 1)
    return "postgresql://" + rest if scheme.startswith("postgresql") else url


def with_db(url: str, db: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + db


# --- the job bodies (run in the worker processes) ------------------------------------------

_conn: psycopg.AsyncConnection | None = None
_conn_lock = asyncio.Lock()


async def record(key: str, event: str) -> None:
    """A `bench_runs` row for this job and process; `done` also NOTIFYs bench_done."""
    async with _conn_lock:
        assert _conn is not None
        await _conn.execute(
            "INSERT INTO bench_runs (job_key, pid, event) VALUES (%s, %s, %s)", (key, os.getpid(), event)
        )
        if event == "done":
            await _conn.execute("SELECT pg_notify('bench_done', %s)", (key,))


async def body(key: str, seconds: float, touch: Any = None) -> None:
    """The job: `start`, sleep `seconds` (touching the heartbeat if given), `done`."""
    await record(key, "start")
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        await asyncio.sleep(min(left, SAQ["touch_interval_s"]))
        if touch is not None:
            await touch()
    await record(key, "done")


# --- procrastinate ------------------------------------------------------------------------


def procrastinate_app(dsn: str) -> Any:
    """A procrastinate App on `dsn` with the bench's two tasks."""
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn, min_size=1, max_size=4))

    @app.task(name="sleep_job", queue="bench")
    async def sleep_job(key: str, seconds: float) -> None:
        await body(key, seconds)

    @app.task(name="noop", queue="bench")
    async def noop(key: str) -> None:
        await record(key, "done")

    return app


async def procrastinate_sweep(app: Any, dsn: str) -> None:
    """Retry the jobs of stalled workers, one sweeper at a time (the documented recipe, looped)."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as lock:
        while True:
            await asyncio.sleep(PROCRASTINATE["sweep_interval_s"])
            got = await (await lock.execute("SELECT pg_try_advisory_lock(%s)", (SWEEP_LOCK_KEY,))).fetchone()
            if not got or not got[0]:
                continue
            try:
                stalled = await app.job_manager.get_stalled_jobs(
                    seconds_since_heartbeat=PROCRASTINATE["stalled_after_s"]
                )
                for job in stalled:
                    with suppress(Exception):  # finished or retried meanwhile
                        await app.job_manager.retry_job(job)
            finally:
                await lock.execute("SELECT pg_advisory_unlock(%s)", (SWEEP_LOCK_KEY,))


async def procrastinate_worker(dsn: str) -> None:
    app = procrastinate_app(dsn)
    async with app.open_async():
        sweeper = asyncio.create_task(procrastinate_sweep(app, dsn))
        await record("__ready__", "ready")
        try:
            await app.run_worker_async(
                queues=["bench"],
                concurrency=PROCRASTINATE["concurrency"],
                update_heartbeat_interval=PROCRASTINATE["update_heartbeat_interval"],
                stalled_worker_timeout=PROCRASTINATE["stalled_after_s"],
                fetch_job_polling_interval=PROCRASTINATE["fetch_job_polling_interval"],
                install_signal_handlers=False,
            )
        finally:
            sweeper.cancel()


class Procrastinate:
    """The bench's client side of procrastinate."""

    name = "procrastinate"

    def __init__(self, dsn: str) -> None:
        self.dsn, self.app = dsn, procrastinate_app(dsn)

    async def setup(self) -> None:
        await self.app.open_async()
        await self.app.schema_manager.apply_schema_async()

    async def close(self) -> None:
        await self.app.close_async()

    async def enqueue(self, task: str, key: str, idle: bool = False, **kwargs: Any) -> bool:
        """Defer; False when the queueing lock `key` already has a job waiting."""
        import procrastinate.exceptions as pe

        options: dict[str, Any] = {"queueing_lock": key} | ({"queue": "idle"} if idle else {})
        try:
            await self.app.tasks[task].configure(**options).defer_async(key=key, **kwargs)
        except pe.AlreadyEnqueued:
            return False
        return True

    async def workers_ready(self, conn: psycopg.AsyncConnection, n: int) -> bool:
        row = await (await conn.execute("SELECT count(*) FROM procrastinate_workers")).fetchone()
        return bool(row and row[0] >= n)


# --- SAQ ----------------------------------------------------------------------------------


def saq_queue(dsn: str, name: str = "bench") -> Any:
    from saq.queue.postgres import PostgresQueue

    return PostgresQueue.from_url(dsn, name=name, min_size=1, max_size=4)


async def saq_sleep_job(ctx: dict, *, job_key: str, seconds: float) -> None:
    await body(job_key, seconds, touch=ctx["job"].update)


async def saq_noop(ctx: dict, *, job_key: str) -> None:  # `key` is a Job field, not a kwarg
    await record(job_key, "done")


async def saq_worker(dsn: str) -> None:
    from saq import Worker

    queue = saq_queue(dsn)
    await queue.connect()
    worker = Worker(
        queue,
        functions=[("sleep_job", saq_sleep_job), ("noop", saq_noop)],
        concurrency=SAQ["concurrency"],
        timers={"sweep": SAQ["sweep_timer_s"], "schedule": SAQ["schedule_timer_s"]},
    )
    await record("__ready__", "ready")
    try:
        await worker.start()
    finally:
        await queue.disconnect()


class Saq:
    """The bench's client side of SAQ's PostgreSQL queue."""

    name = "saq"

    def __init__(self, dsn: str) -> None:
        self.dsn, self.queue, self.idle = dsn, saq_queue(dsn), saq_queue(dsn, "idle")

    async def setup(self) -> None:
        await self.queue.connect()
        await self.idle.connect()

    async def close(self) -> None:
        await self.queue.disconnect()
        await self.idle.disconnect()

    async def enqueue(self, task: str, key: str, idle: bool = False, **kwargs: Any) -> bool:
        """Enqueue under job key `key`; False when a job with that key is queued or active."""
        job = await (self.idle if idle else self.queue).enqueue(
            task,
            key=key,
            heartbeat=SAQ["heartbeat_s"],
            timeout=SAQ["timeout_s"],
            retries=SAQ["retries"],
            job_key=key,
            **({"seconds": kwargs["seconds"]} if "seconds" in kwargs else {}),
        )
        return job is not None

    async def workers_ready(self, conn: psycopg.AsyncConnection, n: int) -> bool:
        return True  # a SAQ worker dequeues as soon as it starts; `ready` rows suffice


ENGINES = {"procrastinate": Procrastinate, "saq": Saq}
WORKERS = {"procrastinate": procrastinate_worker, "saq": saq_worker}


async def worker_main(engine: str, dsn: str) -> None:
    """A worker process: its engine's worker, at most WORKER_MAX_S."""
    global _conn
    _conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    with suppress(TimeoutError):
        await asyncio.wait_for(WORKERS[engine](dsn), WORKER_MAX_S)


# --- the bench (parent process) ------------------------------------------------------------


class Workers:
    """The worker processes of one engine, logs in `work`."""

    def __init__(self, engine: str, dsn: str, work: Path) -> None:
        self.engine, self.dsn, self.work, self.procs, self.n = engine, dsn, work, {}, 0

    def start(self) -> int:
        self.n += 1
        log = open(self.work / f"{self.engine}-worker-{self.n}.log", "wb")  # noqa: SIM115 (closed by the child)
        cmd = [sys.executable, __file__, "_worker", self.engine, self.dsn]
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True, cwd=h.BENCH_DIR)
        log.close()
        self.procs[proc.pid] = proc
        return proc.pid

    def kill(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)
        self.procs.pop(pid).wait()

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in self.work.glob("*.log")
        )


async def until(check: Any, timeout: float, what: str, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(step)
    return result


async def rows(conn: psycopg.AsyncConnection, key: str, event: str) -> list[tuple[int, float]]:
    """(pid, epoch seconds) of `event` rows of job `key`, oldest first."""
    cur = await conn.execute(
        "SELECT pid, extract(epoch FROM at)::float8 FROM bench_runs"
        " WHERE job_key = %s AND event = %s ORDER BY at",
        (key, event),
    )
    return [(int(p), float(t)) for p, t in await cur.fetchall()]


async def enqueue_latency(eng: Any, conn: psycopg.AsyncConnection) -> dict[str, Any]:
    """ms per enqueue (to a queue no worker reads) against a one-row INSERT, alternating rounds."""
    await conn.execute("CREATE TABLE bench_insert (k text PRIMARY KEY, v jsonb)")
    runs: dict[str, list[float]] = {"insert": [], "enqueue": []}

    async def insert(k: str) -> None:
        await conn.execute("INSERT INTO bench_insert VALUES (%s, %s)", (k, '{"key": "x"}'))

    async def enqueue(k: str) -> None:
        assert await eng.enqueue("noop", k, idle=True)

    for r in range(ENQUEUE_ROUNDS):
        order = [("insert", insert), ("enqueue", enqueue)][:: 1 if r % 2 == 0 else -1]
        for name, fn in order:
            for i in range(ENQUEUE_N):
                started = time.perf_counter()
                await fn(f"lat-{name}-{r}-{i}")
                runs[name].append((time.perf_counter() - started) * 1000)
    out: dict[str, Any] = {name: summary(v) for name, v in runs.items()}
    out["ratio_p50"] = out["enqueue"]["p50_ms"] / out["insert"]["p50_ms"]
    return out


def summary(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": statistics.median(ms), "p99_ms": h.percentile(ms, 99), "mean_ms": statistics.fmean(ms)}


async def round_trips(eng: Any, dsn: str) -> dict[str, float]:
    """Enqueue -> the empty job's NOTIFY reaches us, ms."""
    took = []
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as listen:
        await listen.execute("LISTEN bench_done")
        for i in range(ROUND_TRIPS):
            key = f"rt-{i}"
            started = time.perf_counter()
            assert await eng.enqueue("noop", key)
            async with aclosing(listen.notifies(timeout=30)) as notes:
                async for note in notes:
                    if note.payload == key:
                        break
                else:
                    raise RuntimeError(f"round trip {key}: no notification in 30 s")
            took.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.05)
    return summary(took)


async def dedup(eng: Any) -> dict[str, bool]:
    """The same key twice while the first is waiting: is the second refused?"""
    first = await eng.enqueue("noop", "dedup-1", idle=True)
    second = await eng.enqueue("noop", "dedup-1", idle=True)
    return {"first_accepted": first, "second_refused": not second}


async def kill_rounds(
    eng: Any, conn: psycopg.AsyncConnection, workers: Workers, rounds: int
) -> dict[str, Any]:
    """SIGKILL the worker running a JOB_SECONDS job; time until it restarts and completes elsewhere."""
    results = []
    for r in range(rounds):
        key = f"kill-{r}"
        assert await eng.enqueue("sleep_job", key, seconds=JOB_SECONDS)
        (pid, _), *_ = await until(lambda k=key: rows(conn, k, "start"), 30, f"{key} to start")
        await asyncio.sleep(KILL_AFTER)
        killed_at = time.time()
        workers.kill(pid)
        done = await until(lambda k=key: rows(conn, k, "done"), WAIT_MAX_S, f"{key} to complete", 0.02)
        fresh = workers.start()  # two workers again for the next round, once the survivor has it
        starts = await rows(conn, key, "start")
        results.append(
            {
                "round": r + 1,
                "killed_pid": pid,
                "done_pid": done[0][0],
                "restart_s": starts[1][1] - killed_at if len(starts) > 1 else None,
                "complete_s": done[0][1] - killed_at,
                "replacement_pid": fresh,
            }
        )
        h.log(
            f"  {eng.name} round {r + 1}: killed {pid}; restarted after {results[-1]['restart_s']:.2f} s, "
            f"completed on {done[0][0]} after {results[-1]['complete_s']:.2f} s"
        )
        await until(lambda: ready_count(conn, workers.n), 60, "the replacement worker")
    # a late duplicate would start within a stalled threshold + sweep and finish JOB_SECONDS later
    await asyncio.sleep(JOB_SECONDS + 8)
    for res in results:
        key = f"kill-{res['round'] - 1}"
        res["starts"] = len(await rows(conn, key, "start"))
        res["completions"] = len(await rows(conn, key, "done"))
        res["completed_elsewhere"] = res["done_pid"] != res["killed_pid"]
    complete = [x["complete_s"] for x in results]
    restart = [x["restart_s"] for x in results if x["restart_s"] is not None]
    return {
        "rounds": results,
        "complete_mean_s": statistics.fmean(complete),
        "complete_max_s": max(complete),
        "restart_mean_s": statistics.fmean(restart) if restart else None,
        "restart_max_s": max(restart) if restart else None,
        "completed_once": sum(x["completions"] == 1 for x in results),
        "completed_twice_or_more": sum(x["completions"] >= 2 for x in results),
        "completed_on_other_worker": sum(x["completed_elsewhere"] for x in results),
    }


async def ready_count(conn: psycopg.AsyncConnection, n: int) -> bool:
    row = await (await conn.execute("SELECT count(*) FROM bench_runs WHERE event = 'ready'")).fetchone()
    return bool(row and row[0] >= n)


async def bench_engine(name: str, admin_dsn: str, rounds: int, work: Path) -> dict[str, Any]:
    db = f"jobbench_{os.getpid()}_{name}"
    dsn = with_db(admin_dsn, db)
    async with await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True) as admin:
        await admin.execute(f'CREATE DATABASE "{db}"')
    workers = Workers(name, dsn, work)
    eng = ENGINES[name](dsn)
    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute(
                "CREATE TABLE bench_runs"
                " (job_key text, pid int, event text, at timestamptz DEFAULT clock_timestamp())"
            )
            await eng.setup()
            h.log(f"{name}: enqueue latency ({ENQUEUE_ROUNDS} x {ENQUEUE_N}) ...")
            latency = await enqueue_latency(eng, conn)
            deduped = await dedup(eng)
            for _ in range(2):
                workers.start()
            await until(lambda: ready_count(conn, 2), 60, "two workers")
            await until(lambda: eng.workers_ready(conn, 2), 60, "two registered workers")
            await asyncio.sleep(1)
            h.log(f"{name}: {ROUND_TRIPS} empty-job round trips ...")
            rt = await round_trips(eng, dsn)
            h.log(f"{name}: kill -9 rounds ({JOB_SECONDS:g} s job, killed {KILL_AFTER:g} s in) ...")
            killed = await kill_rounds(eng, conn, workers, rounds)
            await eng.close()
        return {"engine": name, "enqueue": latency, "round_trip": rt, "dedup": deduped, "kill": killed}
    except Exception:
        h.log(workers.logs())
        raise
    finally:
        workers.stop()
        async with await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True) as admin:
            await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def row_of(res: dict[str, Any]) -> dict[str, Any]:
    k, e, rt = res["kill"], res["enqueue"], res["round_trip"]
    n = len(k["rounds"])
    return {
        "engine": res["engine"],
        "kill -9: restart mean/max s": f"{k['restart_mean_s']:.2f} / {k['restart_max_s']:.2f}",
        "complete mean/max s": f"{k['complete_mean_s']:.2f} / {k['complete_max_s']:.2f}",
        "once/twice": f"{k['completed_once']}/{k['completed_twice_or_more']} of {n}",
        "enqueue p50 ms": f"{e['enqueue']['p50_ms']:.2f}",
        "INSERT p50 ms": f"{e['insert']['p50_ms']:.2f}",
        "enqueue/INSERT": e["ratio_p50"],
        "round trip p50/p99 ms": f"{rt['p50_ms']:.1f} / {rt['p99_ms']:.1f}",
        "dedup": "yes" if res["dedup"]["first_accepted"] and res["dedup"]["second_refused"] else "NO",
    }


async def amain(args: argparse.Namespace) -> int:
    admin = libpq_url(args.postgres)
    names = list(ENGINES) if args.engine == "both" else [args.engine]
    out = []
    with tempfile.TemporaryDirectory(prefix="jobbench-") as tmp:
        for name in names:
            out.append(await bench_engine(name, admin, args.rounds, Path(tmp)))
    settings = {
        "job_seconds": JOB_SECONDS,
        "kill_after_s": KILL_AFTER,
        "procrastinate": PROCRASTINATE,
        "saq": SAQ,
        "versions": {m: metadata.version(m) for m in ("procrastinate", "saq", "psycopg", "psycopg-pool")},
    }
    h.report(args.out, [row_of(r) for r in out], settings, results=out)
    return 0


def main() -> int:
    logging.getLogger("procrastinate").setLevel(logging.ERROR)  # its note about an App in __main__
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--engine", choices=[*ENGINES, "both"], default="both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", default=os.environ.get("TEST_POSTGRES_URL", DEFAULT_URL))
    parser.add_argument("--out", type=Path, default=h.BENCH_DIR / "job_engine_results.json")
    return asyncio.run(amain(parser.parse_args()))


if __name__ == "__main__":
    if sys.argv[1:2] == ["_worker"]:
        asyncio.run(worker_main(sys.argv[2], sys.argv[3]))
    else:
        h.run_cli(main)
