"""app.services.webhooks.sender: one attempt against the loopback receiver of
tests/webhook_receiver.py -- a 2xx is delivered with the body and headers as sent, any other
answer, a refused connection or a receiver that never answers is an outcome with its reason,
and a URL the policy forbids is refused before anything is sent."""

from __future__ import annotations

import pytest

from app.core.errors import UrlNotAllowed
from app.services.fetch.url_policy import UrlPolicy
from app.services.webhooks.sender import USER_AGENT, Outcome, check, post
from tests.processes import free_port
from tests.webhook_receiver import receiver

LOOPBACK = UrlPolicy(allow_loopback=True, read_timeout=0.5, total_timeout=5.0)
BODY = b'{"event":"analysis.done"}'


async def test_a_2xx_is_delivered_with_the_body_and_headers_as_sent() -> None:
    async with receiver() as hook:
        outcome = await post(hook.url, BODY, {"X-Signature": "sig"}, LOOPBACK)
    assert outcome == Outcome(200, None) and outcome.delivered
    [got] = hook.requests
    assert got.body == BODY
    assert got.headers["x-signature"] == "sig"
    assert got.headers["user-agent"] == USER_AGENT
    assert got.headers["content-type"] == "application/json"
    assert got.headers["host"] == f"127.0.0.1:{hook.port}"


async def test_other_answers_are_failed_outcomes_with_their_status() -> None:
    async with receiver(fail_first=1) as hook:
        first = await post(hook.url, BODY, {}, LOOPBACK)
        second = await post(hook.url, BODY, {}, LOOPBACK)
    assert first == Outcome(500, "The receiver answered 500") and not first.delivered
    assert second.delivered


async def test_a_receiver_that_never_answers_or_a_closed_port_is_a_failed_outcome() -> None:
    async with receiver(hang=True) as hook:
        outcome = await post(hook.url, BODY, {}, LOOPBACK)
    assert outcome == Outcome(None, "The receiver sent nothing for 0.5 s")
    assert hook.held == 1
    closed = await post(f"http://127.0.0.1:{free_port()}/hook", BODY, {}, LOOPBACK)
    assert closed == Outcome(None, "Could not connect to the host")


async def test_a_forbidden_url_is_refused_before_anything_is_sent() -> None:
    async with receiver() as hook:
        outcome = await post(hook.url, BODY, {}, UrlPolicy())  # loopback not allowed
        with pytest.raises(UrlNotAllowed):
            await check(hook.url, UrlPolicy())
        await check(hook.url, LOOPBACK)
    assert outcome.status_code is None and outcome.error is not None and "loopback" in outcome.error
    assert hook.requests == []
