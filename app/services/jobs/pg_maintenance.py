"""Maintenance of the scale-out job engine (`ProcrastinateJobQueue`), one pass at a time.

Every process with the engine open (API replicas and `python -m app.worker`) runs a pass
every `JOB_MAINTENANCE_INTERVAL_SECONDS`, under a session advisory lock: whatever the number
of replicas, one pass runs at a time. A pass:

1. **Re-defers lost work.** A pending or running record whose content key has no waiting or
   running procrastinate job (the process died between committing the record and deferring
   it; or its run gave up after every retry, e.g. during a long outage) is deferred again,
   once older than `JOB_STALLED_AFTER_SECONDS` (a submit in flight defers within that).
   `queueing_lock` = job id, so it can never wait twice. A record that was never deferred
   was never acknowledged (its submit had not answered): its run is free (its hold dropped).
2. **Retention** (`JOB_RETENTION_SECONDS`, as the embedded queue): finished records older
   than that are deleted, then the input and output objects no record refers to (under the
   content key's lock, so a submit of the same content cannot lose them), and procrastinate's
   own finished jobs of that age.
3. **Orphaned objects**: `jobs/` objects no record refers to, older than
   `STORAGE_ORPHAN_GRACE_SECONDS` (by age, never by process): a submit that stored its input
   and then failed, work finished after its owner's erasure, a crash mid-retention. This is
   one listing of `jobs/` per pass.

A store or database outage fails the pass (logged); the next one starts over.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from app.services.jobs.pg_queue import QUEUE

if TYPE_CHECKING:
    from app.services.jobs.pg_queue import ProcrastinateJobQueue

logger = logging.getLogger("app.jobs")

BATCH = 500  # rows per statement: a first pass after a long pause stays in short transactions
JOBS_PREFIX = "jobs/"


@dataclass(frozen=True)
class Maintained:
    """What one pass did."""

    redeferred: int
    expired: int
    dropped_keys: int


async def maintain(queue: ProcrastinateJobQueue) -> Maintained:
    """One maintenance pass (see the module docstring); the caller holds the lock."""
    done = Maintained(
        redeferred=await redefer_lost(queue),
        expired=await purge_expired(queue),
        dropped_keys=await drop_orphaned_objects(queue),
    )
    if done.redeferred or done.expired or done.dropped_keys:
        logger.info(
            "job maintenance: %d re-deferred, %d expired record(s), objects of %d key(s) removed",
            done.redeferred,
            done.expired,
            done.dropped_keys,
        )
    return done


async def redefer_lost(queue: ProcrastinateJobQueue) -> int:
    """Defer again each content key whose unfinished records no procrastinate job carries."""
    cutoff = datetime.now(UTC) - timedelta(seconds=queue.settings.job_stalled_after_seconds)
    async with queue.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT DISTINCT ON (c.content_key) c.job_id, c.content_key,"
                " EXISTS (SELECT 1 FROM procrastinate_jobs d"
                "         WHERE d.lock = c.content_key AND d.queueing_lock = c.job_id)"
                " FROM contour_jobs c"
                " WHERE c.status IN ('pending', 'running') AND c.updated_at < %s"
                " AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs p WHERE p.lock = c.content_key"
                "                 AND p.status IN ('todo', 'doing'))"
                " ORDER BY c.content_key, c.created_at LIMIT %s",
                (cutoff, BATCH),
            )
        ).fetchall()
    redeferred = 0
    for job_id, key, deferred_before in rows:
        if not deferred_before:
            await queue.forgo_charge(job_id)  # never acknowledged: never charged
        if await queue.defer(job_id, key):
            redeferred += 1
            logger.warning("re-deferred job %s (key %s): no queued run carried it", job_id, key[:12])
    return redeferred


async def purge_expired(queue: ProcrastinateJobQueue) -> int:
    """Delete finished records older than JOB_RETENTION_SECONDS, then their unreferenced objects."""
    retention = queue.settings.job_retention_seconds
    if retention is None:
        return 0
    cutoff = datetime.now(UTC) - timedelta(seconds=retention)
    expired = 0
    while True:
        async with queue.connection() as conn:
            cursor = await conn.execute(
                "DELETE FROM contour_jobs WHERE job_id IN (SELECT job_id FROM contour_jobs"
                " WHERE status IN ('completed', 'failed') AND updated_at < %s LIMIT %s)"
                " RETURNING content_key",
                (cutoff, BATCH),
            )
            keys = {row[0] for row in await cursor.fetchall()}
            expired += cursor.rowcount
        for key in keys:
            await queue.drop_key(key)
        if cursor.rowcount < BATCH:
            break
    if expired:  # procrastinate's own finished jobs of that age (a scan of its events: not every pass)
        await queue.app.job_manager.delete_old_jobs(
            nb_hours=int(retention // 3600),
            queue=QUEUE,
            include_failed=True,
            include_cancelled=True,
            include_aborted=True,
        )
    return expired


async def drop_orphaned_objects(queue: ProcrastinateJobQueue) -> int:
    """Remove the objects of content keys no record names, once their newest object is older
    than STORAGE_ORPHAN_GRACE_SECONDS; how many keys."""
    newest: dict[str, float] = {}
    async for info in queue.store.list(JOBS_PREFIX):
        key = info.key.rpartition("/")[2]
        newest[key] = max(newest.get(key, 0.0), info.modified)
    cutoff = time.time() - queue.settings.storage_orphan_grace_seconds
    old = [key for key, modified in newest.items() if modified < cutoff]
    if not old:
        return 0
    async with queue.connection() as conn:
        cursor = await conn.execute(
            "SELECT DISTINCT content_key FROM contour_jobs WHERE content_key = ANY(%s)", (old,)
        )
        named = {row[0] for row in await cursor.fetchall()}
    dropped = 0
    for key in old:
        if key not in named and await queue.drop_key(key):
            dropped += 1
    return dropped
