"""Readiness: is this process able to serve? (data dirs writable, free disk, analyzers loaded,
and the servers it depends on: the object store when `STORAGE_URL` is s3://, PostgreSQL when
`DATABASE_URL` names it (and, in scale-out mode, the job engine's own pool), Redis when
`REDIS_URL` is set).

A failing required check makes `/readyz` 503. The Redis check is required only with
`REDIS_OUTAGE_POLICY=fail-closed`: with `fail-open` (the default) requests are still served
while Redis is down, so readiness reports it failing but stays 200, status `degraded`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.analyzers.registry import AnalyzerRegistry
from app.core.errors import StorageUnavailable
from app.core.threads import ThreadPool
from app.db.engine import is_sqlite
from app.services.jobs.file_queue import JobQueue
from app.services.jobs.pg_queue import ProcrastinateJobQueue
from app.services.rate_limits import RateLimits
from app.services.readiness_settings import ReadinessSettings
from app.storage.object_images import ObjectImages


@dataclass(frozen=True)
class Check:
    """One readiness check and what it found (`required`: its failure makes the process not ready)."""

    name: str
    ok: bool
    detail: str
    required: bool = True


def readiness_checks(settings: ReadinessSettings, registry: AnalyzerRegistry) -> list[Check]:
    """Every local readiness check (blocking: a few `stat`s; call it from a thread)."""
    dirs = (settings.images_dir, settings.analysis_dir)
    writable = all(os.access(d, os.W_OK) for d in dirs)
    free = shutil.disk_usage(settings.data_dir).free
    names = registry.names()
    missing = registry.unavailable
    loaded = "loaded: " + ", ".join(names)
    if missing:
        loaded += "; not loaded: " + "; ".join(f"{name} ({why})" for name, why in sorted(missing.items()))
    return [
        Check("data_dir_writable", writable, str(settings.data_dir)),
        Check(
            "free_disk",
            free >= settings.min_free_disk_bytes,
            f"{free} bytes free, {settings.min_free_disk_bytes} required",
        ),
        Check("analyzers_loaded", bool(names) and not missing, loaded),
    ]


async def dependency_checks(
    settings: ReadinessSettings,
    engine: AsyncEngine,
    rate_limits: RateLimits,
    database_ready: bool,
    objects: ObjectImages | None = None,
    jobs: JobQueue | ProcrastinateJobQueue | None = None,
) -> list[Check]:
    """The servers this process needs, each asked once within its timeout (none by default);
    `jobs`: the contour job queue (scale-out: the job engine's own pool is checked too)."""
    checks: list[Check] = []
    if objects is not None:
        checks.append(await _storage_check(objects))
    if not is_sqlite(settings.database):
        checks.append(
            await _database_check(engine, settings.database_connect_timeout_seconds, database_ready)
        )
    if isinstance(jobs, ProcrastinateJobQueue):
        failure = await jobs.check()
        checks.append(Check("job_engine", failure is None, failure or "reachable (procrastinate's pool)"))
    redis = await rate_limits.available()
    if redis is not None:
        policy = settings.redis_outage_policy
        effect = "" if redis else "; rate limits skipped" if policy == "fail-open" else "; requests get 503"
        detail = f"{'reachable' if redis else 'unreachable'} (REDIS_OUTAGE_POLICY={policy}{effect})"
        checks.append(Check("redis", redis, detail, required=policy == "fail-closed"))
    return checks


class Readiness:
    """This process's readiness, every check run (`/readyz`); the database counts as reachable
    only once its start-up steps are done (`database_ready`)."""

    def __init__(
        self,
        settings: ReadinessSettings,
        registry: AnalyzerRegistry,
        pool: ThreadPool,
        engine: AsyncEngine,
        rate_limits: RateLimits,
        database_ready: Callable[[], bool],
        objects: ObjectImages | None = None,
        jobs: JobQueue | ProcrastinateJobQueue | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.pool = pool
        self.engine = engine
        self.rate_limits = rate_limits
        self.database_ready = database_ready
        self.objects = objects
        self.jobs = jobs

    async def checks(self) -> list[Check]:
        """The local checks (in the pool: they `stat`), then the servers'."""
        found = await self.pool.run(readiness_checks, self.settings, self.registry)
        return found + await dependency_checks(
            self.settings, self.engine, self.rate_limits, self.database_ready(), self.objects, self.jobs
        )


async def _storage_check(objects: ObjectImages) -> Check:
    try:
        await objects.check()  # bounded by the S3 timeouts and attempts
    except StorageUnavailable:
        return Check("storage", False, "object storage unreachable (STORAGE_URL)")
    return Check("storage", True, "object storage reachable (STORAGE_URL)")


async def _database_check(engine: AsyncEngine, timeout: float, started: bool) -> Check:
    if not started:
        return Check("database", False, "unreachable since start-up (retrying)")
    try:
        async with asyncio.timeout(timeout), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:  # whatever the reason, it cannot serve: refused, timed out, lost
        return Check("database", False, f"unreachable ({type(exc).__name__})")
    return Check("database", True, "reachable")
