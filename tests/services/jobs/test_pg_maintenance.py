"""app.services.jobs.pg_maintenance: the scale-out job engine's periodic maintenance, seen
through replicas sharing PostgreSQL and a bucket -- retention purges finished records and then
the objects nobody refers to; a record no queued job carries is deferred again once."""

from __future__ import annotations

from pathlib import Path

import anyio

from app.storage.s3 import S3ObjectStore
from tests.services.jobs.engine import (
    STATUS,
    SUBMIT,
    content_key,
    eventually,
    job_keys,
    landmark_job,
    login,
    replica_settings,
    serve_ready,
    sql,
    wait_finished,
)


async def test_retention_purges_finished_records_then_the_objects_nobody_refers_to(
    replica_env: dict[str, str], tmp_path: Path, bucket: S3ObjectStore, pg_url: str
) -> None:
    """Records finished longer ago than JOB_RETENTION_SECONDS are purged by the periodic
    maintenance, and the content's objects go with the last record that names them."""
    settings = replica_settings(replica_env, tmp_path, "a", job_maintenance_interval_seconds=0.2)
    async with serve_ready(settings) as a:
        carol = await login(a, register=True)
        ids = []
        for job in (landmark_job(20), landmark_job(20), landmark_job(21)):  # the 2nd from the cache
            accepted = await a.post(SUBMIT, json=job, headers=carol)
            assert accepted.status_code == 202, accepted.text
            ids.append(accepted.json()["job_id"])
            assert (await wait_finished(a, ids[-1], carol, timeout=60))["status"] == "completed"
        old, same, kept = ids
        shared, other = await content_key(pg_url, old), await content_key(pg_url, kept)
        assert await job_keys(bucket) == {shared, other}

        async def expire(job_id: str) -> None:  # finished 8 days ago (retention: 7)
            await sql(
                pg_url,
                "UPDATE contour_jobs SET updated_at = now() - interval '8 days' WHERE job_id = $1",
                job_id,
            )

            async def gone() -> bool:
                return (await a.get(STATUS.format(job_id), headers=carol)).status_code == 404

            await eventually(gone)

        await expire(old)
        assert await job_keys(bucket) == {shared, other}  # `same` still names the content
        assert (await a.get(STATUS.format(same), headers=carol)).json()["result"]
        await expire(same)

        async def objects_gone() -> bool:
            return await job_keys(bucket) == {other}

        await eventually(objects_gone)
        assert (await a.get(STATUS.format(kept), headers=carol)).json()["result"]


async def test_a_record_no_queued_job_carries_is_deferred_again_once(
    replica_env: dict[str, str], tmp_path: Path, pg_url: str
) -> None:
    """The state a crash between saving a job record and deferring it leaves (created here by
    removing the deferred job), and a run that gave up (marked failed): maintenance defers
    both again (`queueing_lock` = job id), they complete; only the acknowledged one is charged."""
    async with serve_ready(replica_settings(replica_env, tmp_path, "a", job_worker_in_process=False)) as a:
        carol = await login(a, register=True)
        lost = (await a.post(SUBMIT, json=landmark_job(40), headers=carol)).json()["job_id"]
        gave_up = (await a.post(SUBMIT, json=landmark_job(41), headers=carol)).json()["job_id"]
    await sql(pg_url, "DELETE FROM procrastinate_jobs WHERE queueing_lock = $1", lost)
    await sql(pg_url, "UPDATE procrastinate_jobs SET status = 'failed' WHERE queueing_lock = $1", gave_up)

    quick = {
        "job_maintenance_interval_seconds": 0.2,
        "job_heartbeat_seconds": 0.2,
        "job_stalled_after_seconds": 1,
    }
    async with (
        serve_ready(replica_settings(replica_env, tmp_path, "b", **quick)) as b,
        serve_ready(replica_settings(replica_env, tmp_path, "c", **quick)) as c,
    ):
        for job_id in (lost, gave_up):
            assert (await wait_finished(b, job_id, carol, timeout=60))["status"] == "completed"
        await anyio.sleep(1)  # a few more maintenance passes on both replicas: nothing is re-run
        for job_id in (lost, gave_up):
            runs = await sql(
                pg_url, "SELECT status FROM procrastinate_jobs WHERE queueing_lock = $1 ORDER BY id", job_id
            )
            assert [r[0] for r in runs] == (["succeeded"] if job_id == lost else ["failed", "succeeded"])
        me = (await c.get("/v1/me", headers=carol)).json()
        assert me["credits"] == 4  # the run whose submit was never answered is free
