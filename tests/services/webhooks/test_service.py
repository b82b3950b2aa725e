"""app.services.webhooks.service: a registered callback gets the fired event, signed with the
principal's secret, from one delivery pass (against the loopback receiver of
tests/webhook_receiver.py); a refused attempt stays due for a retry; anonymous callers and URLs
that are too long are refused; a rotation keeps the previous secret signing, an erasure forgets it
(on SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.core.errors import CallbackNeedsCredentials, UrlNotAllowed
from app.services.accounts.principals import Principal
from app.services.webhooks import signing
from app.services.webhooks.service import WebhookEvent, WebhookService
from app.services.webhooks.settings import DeliverySettings
from tests.webhook_receiver import receiver

CAROL = Principal(id="user:7", kind="user", user_id=7)
EVENT = WebhookEvent("contour_job.completed", {"job_id": "job-1"}, datetime(2026, 12, 6, tzinfo=UTC))


def service(sessions: async_sessionmaker[AsyncSession]) -> WebhookService:
    settings = Settings(_env_file=None, url_fetch_allow_loopback=True, webhook_max_url_length=100)
    return WebhookService(DeliverySettings.from_settings(settings), sessions)


async def test_a_fired_event_is_delivered_signed(sessions: async_sessionmaker[AsyncSession]) -> None:
    hooks = service(sessions)
    async with receiver(fail_first=1) as hook:
        await hooks.check_callback(hook.url, CAROL)
        delivery_id = await hooks.register(CAROL, "job-1", hook.url)
        assert await hooks.fire("job-1", EVENT) == 1
        assert await hooks.fire("job-2", EVENT) == 0  # nobody awaits it
        assert await hooks.run_once() == 1
        await hook.wait_for(lambda r: len(r.requests) == 1, timeout=10)
        await hooks.stop()
        assert hook.requests[0].answered == 500  # refused: tried again later, not now
        [row] = await hooks.recent(CAROL, 10)
        assert row.id == delivery_id and row.status != "delivered"
    secret = (await hooks.secret(CAROL)).secret
    got = hook.requests[0]
    assert json.loads(got.body) == {
        "type": EVENT.type,
        "timestamp": EVENT.timestamp.isoformat(),
        "data": EVENT.data,
    }
    assert got.headers["webhook-id"] == delivery_id
    expected = signing.sign(secret, delivery_id, int(got.headers["webhook-timestamp"]), got.body)
    assert got.headers["webhook-signature"] == expected


async def test_callbacks_and_secrets_are_refused_to_anonymous_callers(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    hooks = service(sessions)
    anonymous = Principal(id="anonymous", kind="anonymous")
    with pytest.raises(CallbackNeedsCredentials):
        await hooks.check_callback("http://127.0.0.1:9/hook", anonymous)
    with pytest.raises(CallbackNeedsCredentials):
        await hooks.secret(anonymous)
    with pytest.raises(UrlNotAllowed):
        await hooks.check_callback("http://127.0.0.1:9/" + "x" * 100, CAROL)


async def test_a_rotation_keeps_the_previous_secret_signing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    hooks = service(sessions)
    first = await hooks.secret(CAROL)
    assert (await hooks.secret(CAROL)).secret == first.secret and first.previous_valid_until is None
    rotated = await hooks.rotate(CAROL)
    assert rotated.secret != first.secret and rotated.previous_valid_until is not None
    assert rotated.previous_valid_until > datetime.now(UTC)
    await hooks.erase(CAROL.id)  # account erasure: the secret is forgotten
    assert (await hooks.secret(CAROL)).secret not in (first.secret, rotated.secret)
