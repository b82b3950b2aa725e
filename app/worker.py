"""`python -m app.worker`: a contour job worker of its own (scale-out mode).

It builds the same services as the API (models, database, object store, credits) and runs
the procrastinate worker, the stalled-job sweep and the maintenance pass
(`app.services.jobs.pg_maintenance`) until SIGTERM or SIGINT; the API
replicas can then run with `JOB_WORKER_IN_PROCESS=false`. A worker that is stopped gracefully
aborts its running job (procrastinate retries it elsewhere); one that is killed has its job
retried by another worker's stalled sweep after `JOB_STALLED_AFTER_SECONDS`.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import anyio.to_thread

from app.composition import build_container
from app.core.config import Settings, get_settings
from app.core.logging import configure_logging
from app.services.jobs.pg_queue import ProcrastinateJobQueue

logger = logging.getLogger("app.worker")


async def run(settings: Settings) -> None:
    """Run a job worker until SIGTERM/SIGINT."""
    settings = settings.model_copy(update={"job_worker_in_process": True})
    container = await anyio.to_thread.run_sync(build_container, settings, None)
    if not isinstance(container.contour_jobs.queue, ProcrastinateJobQueue):
        raise SystemExit("app.worker needs scale-out mode: STORAGE_URL=s3://... and PostgreSQL")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await container.start()
    logger.info("job worker %s started", container.contour_jobs.queue.worker)
    try:
        await stop.wait()
    finally:
        await container.stop()
        await anyio.to_thread.run_sync(container.close)


def main() -> None:
    """Entry point of `python -m app.worker`."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
