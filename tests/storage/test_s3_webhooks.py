"""Webhooks in scale-out mode (S3 + PostgreSQL + procrastinate): a job submitted to an API
replica that runs no job worker is called back by the replica that runs one, signed with the
secret every replica shares, retried after a failure."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy.engine import make_url
from standardwebhooks import Webhook

from app.core.config import Settings
from tests.processes import Worker
from tests.services.jobs.conftest import pg_url, replica_env  # noqa: F401  (fixtures)
from tests.services.jobs.engine import SUBMIT, landmark_job, login, serve_ready, wait_finished
from tests.webhook_receiver import receiver


async def test_the_job_engines_worker_delivers_a_job_submitted_elsewhere(
    replica_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    def settings(name: str, **extra: Any) -> Settings:
        values = {k.lower(): v for k, v in replica_env.items()}
        return Settings(
            _env_file=None,
            data_dir=tmp_path / name,
            environment="test",
            api_keys=[],
            url_fetch_allow_loopback=True,
            webhook_retry_base_seconds=0.05,
            webhook_retry_max_delay_seconds=0.2,
            webhook_poll_interval_seconds=0.05,
            **values,
            **extra,
        )

    async with (
        receiver(fail_first=1) as hook,
        serve_ready(settings("api", job_worker_in_process=False)) as api,
        serve_ready(settings("worker")) as worker,
    ):
        carol = await login(api, register=True)
        accepted = await api.post(SUBMIT, json={**landmark_job(7), "callback_url": hook.url}, headers=carol)
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        await hook.wait_for(lambda r: r.delivered(), timeout=60)
        secret = (await api.get("/api/v1/webhooks/secret", headers=carol)).json()["secret"]
        assert (await worker.get("/api/v1/webhooks/secret", headers=carol)).json()["secret"] == secret
        for request in hook.requests:  # verified with the shared secret (the parsed body returned)
            assert Webhook(secret).verify(request.body, request.headers)["data"]["job_id"] == job_id
        assert len({r.headers["webhook-id"] for r in hook.requests}) == 1
        with anyio.fail_after(30):
            while (
                rows := (await api.get("/api/v1/webhooks/deliveries", headers=carol)).json()["deliveries"]
            )[0]["status"] != "delivered":
                await anyio.sleep(0.05)
        assert rows[0]["attempts"] == 2


@pytest.fixture
def processes() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for process in started:
        process.stop()


async def engine_tasks(url: str, delivery_id: str) -> list[str]:
    """The statuses of the job engine's tasks that carried `delivery_id`'s attempts."""
    import asyncpg

    conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
    try:
        rows = await conn.fetch(
            "SELECT status FROM procrastinate_jobs WHERE task_name = 'webhook_delivery'"
            " AND args->>'delivery_id' = $1 ORDER BY id",
            delivery_id,
        )
    finally:
        await conn.close()
    return [str(row["status"]) for row in rows]


async def test_a_worker_process_delivers_as_engine_tasks_and_a_hanging_receiver_holds_up_nothing(
    replica_env: dict[str, str],  # noqa: F811
    pg_url: str,  # noqa: F811
    tmp_path: Path,
    processes: list[Worker],
) -> None:
    """The API runs no worker; a `python -m app.worker` process runs every attempt as a task
    of the job engine: the receiver that fails twice gets the event a third time (one id, one
    body, signed), each attempt a task; meanwhile a receiver that never answers holds its
    attempt (timeout 300 s) and neither that delivery nor contour jobs wait for it."""
    env = {
        **replica_env,
        "URL_FETCH_ALLOW_LOOPBACK": "true",
        "WEBHOOK_RETRY_BASE_SECONDS": "0.05",
        "WEBHOOK_RETRY_MAX_DELAY_SECONDS": "0.2",
        "WEBHOOK_TIMEOUT_SECONDS": "300",
        "JOB_POLL_INTERVAL_SECONDS": "0.2",
        "LOG_LEVEL": "INFO",
    }
    worker = Worker({**env, "DATA_DIR": str(tmp_path / "w")}, tmp_path / "w.log")
    processes.append(worker)
    values = {k.lower(): v for k, v in env.items()}
    api_settings = Settings(
        _env_file=None, data_dir=tmp_path / "api", environment="test", api_keys=[], **values
    ).model_copy(update={"job_worker_in_process": False})
    async with (
        receiver(fail_first=2) as hook,
        receiver(hang=True) as stuck,
        serve_ready(api_settings) as api,
    ):
        await anyio.to_thread.run_sync(worker.wait_started)
        carol = await login(api, register=True)
        held = await api.post(SUBMIT, json={**landmark_job(11), "callback_url": stuck.url}, headers=carol)
        assert held.status_code == 202, held.text
        await stuck.wait_for(lambda r: r.held == 1, timeout=60)

        accepted = await api.post(SUBMIT, json={**landmark_job(12), "callback_url": hook.url}, headers=carol)
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        await hook.wait_for(lambda r: r.delivered(), timeout=60)
        assert [r.answered for r in hook.requests] == [500, 500, 200]
        secret = (await api.get("/api/v1/webhooks/secret", headers=carol)).json()["secret"]
        for request in hook.requests:
            assert Webhook(secret).verify(request.body, request.headers)["data"]["job_id"] == job_id
        assert len({r.headers["webhook-id"] for r in hook.requests}) == 1
        assert len({r.body for r in hook.requests}) == 1
        delivery_id = hook.requests[0].headers["webhook-id"]
        with anyio.fail_after(30):  # the table keeps the outcome
            while (
                row := next(
                    r
                    for r in (await api.get("/api/v1/webhooks/deliveries", headers=carol)).json()[
                        "deliveries"
                    ]
                    if r["id"] == delivery_id
                )
            )["status"] != "delivered":
                await anyio.sleep(0.05)
        assert (row["attempts"], row["last_status_code"]) == (3, 200)
        assert await engine_tasks(pg_url, delivery_id) == ["succeeded"] * 3

        # Contour jobs run while the hanging attempt holds its slot
        later = await api.post(SUBMIT, json=landmark_job(13), headers=carol)
        done = await wait_finished(api, later.json()["job_id"], carol, timeout=60)
        assert done["status"] == "completed"
        assert stuck.held == 1 and stuck.requests[0].answered is None
