"""Signed webhooks through HTTP: contour jobs with `callback_url` and a receiver on loopback."""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Callable
from contextlib import closing
from typing import Any

import anyio
import httpx
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import text
from standardwebhooks import Webhook, WebhookVerificationError

from app.core.config import Settings
from app.db.engine import create_engine
from tests.conftest import files_under, serve
from tests.factories import encode
from tests.webhook_receiver import receiver

SUBMIT = "/api/v1/frontal/crop/submit"
KEY = {"X-API-KEY": "hook-key-1"}


def job_body(shade: int = 128, **extra: Any) -> dict[str, Any]:
    """A landmarks job (no detection: fast); `shade` makes distinct contents."""
    blank = encode(Image.new("RGB", (200, 200), (shade, shade, shade)), "PNG")
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    points = [{"x": 100 + 50 * np.cos(a), "y": 100 + 60 * np.sin(a)} for a in angles]
    return {"image": base64.b64encode(blank).decode(), "landmarks": points, **extra}


@pytest.fixture
def hook_settings(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    """An API key, loopback allowed (tests only), quick retries and polls."""

    def _make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "api_keys": ["hook-key-1", "hook-key-2"],
            "url_fetch_allow_loopback": True,
            "webhook_retry_base_seconds": 0.05,
            "webhook_retry_max_delay_seconds": 0.2,
            "webhook_poll_interval_seconds": 0.05,
            **overrides,
        }
        return make_settings(**values)

    return _make


async def submit(client: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str] = KEY) -> str:
    resp = await client.post(SUBMIT, json=body, headers=headers)
    assert resp.status_code == 202, resp.text
    return str(resp.json()["job_id"])


async def deliveries(client: httpx.AsyncClient, headers: dict[str, str] = KEY) -> list[dict[str, Any]]:
    resp = await client.get("/api/v1/webhooks/deliveries", headers=headers)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["deliveries"])


async def wait_deliveries(
    client: httpx.AsyncClient,
    done: Callable[[list[dict[str, Any]]], bool],
    headers: dict[str, str] = KEY,
    timeout: float = 30,
) -> list[dict[str, Any]]:
    with anyio.fail_after(timeout):
        while not done(rows := await deliveries(client, headers)):
            await anyio.sleep(0.05)
    return rows


async def secret(client: httpx.AsyncClient, headers: dict[str, str] = KEY) -> str:
    resp = await client.get("/api/v1/webhooks/secret", headers=headers)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["secret"])


async def test_a_failing_receiver_gets_the_event_signed_with_one_id_and_the_same_body(
    hook_settings: Callable[..., Settings],
) -> None:
    async with receiver(fail_first=2) as hook, serve(hook_settings()) as client:
        job_id = await submit(client, job_body(callback_url=hook.url))
        await hook.wait_for(lambda r: r.delivered())
        key = await secret(client)
        assert [r.answered for r in hook.requests] == [500, 500, 200]
        for request in hook.requests:  # each attempt signed afresh, verified by the reference library
            Webhook(key).verify(request.body, request.headers)
            with pytest.raises(WebhookVerificationError):
                Webhook(key).verify(request.body + b" ", request.headers)
        assert len({r.headers["webhook-id"] for r in hook.requests}) == 1
        assert len({r.body for r in hook.requests}) == 1
        event = json.loads(hook.requests[0].body)
        assert event["type"] == "contour_job.completed"
        assert event["data"]["job_id"] == job_id and event["data"]["status"] == "completed"
        status = await client.get(event["data"]["status_url"], headers=KEY)
        assert status.json()["status"] == "completed"
        rows = await wait_deliveries(client, lambda rows: rows[0]["status"] == "delivered")
        assert len(rows) == 1
        row = rows[0]
        assert row["id"] == hook.requests[0].headers["webhook-id"] and row["subject"] == job_id
        assert (row["attempts"], row["last_status_code"], row["last_error"]) == (3, 200, None)
        # Another key sees none of them, and has its own secret
        assert await deliveries(client, {"X-API-KEY": "hook-key-2"}) == []
        assert await secret(client, {"X-API-KEY": "hook-key-2"}) != key


async def test_a_cached_job_calls_back_too(hook_settings: Callable[..., Settings]) -> None:
    async with receiver() as hook, serve(hook_settings()) as client:
        first = await submit(client, job_body())
        with anyio.fail_after(30):
            while (await client.get(f"/api/v1/frontal/crop/status/{first}", headers=KEY)).json()[
                "status"
            ] != "completed":
                await anyio.sleep(0.05)
        second = await submit(client, job_body(callback_url=hook.url))  # born completed
        await hook.wait_for(lambda r: r.delivered())
        assert json.loads(hook.requests[0].body)["data"]["job_id"] == second


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://127.0.0.1:9/hook", "url_not_allowed"),
        ("http://10.1.2.3/hook", "url_not_allowed"),
        ("http://169.254.169.254/latest/meta-data", "url_not_allowed"),
        ("http://[::1]/hook", "url_not_allowed"),
        ("ftp://example.com/hook", "url_not_allowed"),
        ("http://user:pw@example.com/hook", "url_not_allowed"),
        ("not a url", "url_not_allowed"),
        ("http://no-such-host.invalid/hook", "url_fetch_failed"),
        ("http://example.com/" + "a" * 3000, "url_not_allowed"),
    ],
)
async def test_a_private_or_unreachable_callback_is_a_400_and_leaves_nothing(
    hook_settings: Callable[..., Settings], data_dir: Any, url: str, code: str
) -> None:
    async with serve(hook_settings(url_fetch_allow_loopback=False)) as client:
        before = files_under(data_dir)
        resp = await client.post(SUBMIT, json=job_body(callback_url=url), headers=KEY)
        assert resp.status_code == 400, resp.text
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.json()["code"] == code and resp.json()["detail"]
        assert await deliveries(client) == []
        assert files_under(data_dir) == before  # no job input, no record


async def test_anonymous_callers_cannot_have_callbacks(make_settings: Callable[..., Settings]) -> None:
    async with receiver() as hook, serve(make_settings(url_fetch_allow_loopback=True)) as client:
        resp = await client.post(SUBMIT, json=job_body(callback_url=hook.url))
        assert resp.status_code == 403 and resp.json()["code"] == "callback_needs_credentials"
        for method, path in (
            ("GET", "/api/v1/webhooks/secret"),
            ("POST", "/api/v1/webhooks/secret/rotate"),
            ("GET", "/api/v1/webhooks/deliveries"),
        ):
            resp = await client.request(method, path)
            assert resp.status_code == 403 and resp.json()["code"] == "callback_needs_credentials"
        # ... but a job without a callback is still served to them
        assert (await client.post(SUBMIT, json=job_body())).status_code == 202


async def test_a_rotation_signs_with_both_secrets_during_the_grace(
    hook_settings: Callable[..., Settings],
) -> None:
    async with receiver() as hook, serve(hook_settings()) as client:
        old = await secret(client)
        rotated = await client.post("/api/v1/webhooks/secret/rotate", headers=KEY)
        assert rotated.status_code == 200
        new = rotated.json()["secret"]
        assert new.startswith("whsec_") and new != old and rotated.json()["previous_valid_until"]
        assert await secret(client) == new
        await submit(client, job_body(callback_url=hook.url))
        await hook.wait_for(lambda r: r.delivered())
        request = hook.requests[0]
        assert len(request.headers["webhook-signature"].split(" ")) == 2
        for key in (old, new):
            Webhook(key).verify(request.body, request.headers)
    async with receiver() as hook, serve(hook_settings(webhook_secret_grace_seconds=0)) as client:
        old = await secret(client)
        new = (await client.post("/api/v1/webhooks/secret/rotate", headers=KEY)).json()["secret"]
        await submit(client, job_body(shade=90, callback_url=hook.url))
        await hook.wait_for(lambda r: r.delivered())
        Webhook(new).verify(hook.requests[0].body, hook.requests[0].headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(old).verify(hook.requests[0].body, hook.requests[0].headers)


async def test_a_receiver_that_never_answers_slows_nothing_else(
    hook_settings: Callable[..., Settings],
) -> None:
    # A long timeout: the hanging delivery holds its slot the whole test
    settings = hook_settings(webhook_timeout_seconds=300, webhook_concurrency=4)
    async with receiver(hang=True) as stuck, receiver() as fine, serve(settings) as client:
        await submit(client, job_body(shade=10, callback_url=stuck.url))
        await stuck.wait_for(lambda r: r.held == 1)
        job_id = await submit(client, job_body(shade=20, callback_url=fine.url))
        await fine.wait_for(lambda r: r.delivered())
        assert json.loads(fine.requests[0].body)["data"]["job_id"] == job_id
        assert stuck.held == 1 and stuck.requests[0].answered is None  # still waiting on it
        assert (await client.get("/health")).status_code == 200


async def test_an_attempt_without_answer_times_out_and_is_retried(
    hook_settings: Callable[..., Settings],
) -> None:
    settings = hook_settings(webhook_timeout_seconds=0.3)
    async with receiver(hang=True) as stuck, serve(settings) as client:
        await submit(client, job_body(callback_url=stuck.url))
        await stuck.wait_for(lambda r: r.held >= 2)
        rows = await wait_deliveries(client, lambda rows: rows[0]["attempts"] >= 2 and rows[0]["last_error"])
        assert rows[0]["status"] == "pending" and "0.3 s" in rows[0]["last_error"]
        assert rows[0]["next_attempt_at"] is not None
        assert len({r.headers["webhook-id"] for r in stuck.requests}) == 1


async def make_due(settings: Settings) -> None:
    """As if the backoff had passed: every pending delivery is due (no app running)."""
    engine = create_engine(settings.database)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE webhook_deliveries SET next_attempt_at = created_at"))
    await engine.dispose()


async def test_deliveries_survive_a_restart_and_the_url_is_checked_again(
    hook_settings: Callable[..., Settings],
) -> None:
    hourly = {"webhook_retry_base_seconds": 3600, "webhook_retry_max_delay_seconds": 3600}
    async with receiver(fail_first=10**6) as down:
        async with serve(hook_settings(**hourly)) as client:
            await submit(client, job_body(callback_url=down.url))
            await down.wait_for(lambda r: len(r.requests) == 1)
            (row,) = await wait_deliveries(client, lambda rows: rows[0]["last_status_code"] == 500)
        # Restarted with loopback refused: the due delivery is checked again, and not sent
        refusing = hook_settings(url_fetch_allow_loopback=False, **hourly)
        await make_due(refusing)
        async with serve(refusing) as client:
            # (attempts counts a claimed attempt; its outcome is written when it ends)
            (again,) = await wait_deliveries(
                client, lambda rows: rows[0]["attempts"] == 2 and rows[0]["last_status_code"] is None
            )
            assert (again["id"], again["status"], again["last_status_code"]) == (row["id"], "pending", None)
            assert "loopback" in again["last_error"]
        assert len(down.requests) == 1
        # Restarted again, allowed and answering: delivered, with the same id and body
        down.fail_first = 0
        await make_due(hook_settings())
        async with serve(hook_settings()) as client:
            await down.wait_for(lambda r: r.delivered())
            (done,) = await wait_deliveries(client, lambda rows: rows[0]["status"] == "delivered")
            assert done["attempts"] == 3
        assert [r.headers["webhook-id"] for r in down.requests] == [row["id"]] * 2
        assert down.requests[0].body == down.requests[1].body


async def test_a_user_gets_callbacks_and_erasure_forgets_its_secret_and_deliveries(
    hook_settings: Callable[..., Settings], data_dir: Any
) -> None:
    async with receiver() as hook, serve(hook_settings(api_keys=[], initial_credits=5)) as client:
        body = {"username": "hooked", "password": "correct horse battery"}
        assert (await client.post("/api/v1/auth/register", json=body)).status_code == 201
        token = (await client.post("/api/v1/auth/login", json=body)).json()["access_token"]
        me = {"Authorization": f"Bearer {token}"}
        await submit(client, job_body(callback_url=hook.url), headers=me)
        await hook.wait_for(lambda r: r.delivered())
        Webhook(await secret(client, me)).verify(hook.requests[0].body, hook.requests[0].headers)
        await wait_deliveries(client, lambda rows: [r["status"] for r in rows] == ["delivered"], me)
        assert (await client.delete("/api/v1/auth/me", headers=me)).status_code == 204
    with closing(sqlite3.connect(data_dir / "service.db")) as db:
        for table in ("webhook_deliveries", "webhook_secrets"):
            assert db.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
