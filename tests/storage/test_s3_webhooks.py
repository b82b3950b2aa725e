"""Webhooks in scale-out mode (S3 + PostgreSQL + procrastinate): a job submitted to an API
replica that runs no job worker is called back by the replica that runs one, signed with the
secret every replica shares, retried after a failure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from standardwebhooks import Webhook

from app.core.config import Settings
from tests.conftest import serve
from tests.services.jobs.test_pg_queue import SUBMIT, landmark_job, login, pg_url, replica_env  # noqa: F401
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
        serve(settings("api", job_worker_in_process=False)) as api,
        serve(settings("worker")) as worker,
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
