"""Our Standard Webhooks signatures against the reference implementation (PyPI `standardwebhooks`)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from app.services.webhooks import signing


def test_a_signature_verifies_with_the_reference_library_and_matches_its_own() -> None:
    secret = signing.new_secret()
    assert secret.startswith("whsec_")
    body = '{"type":"contour_job.completed","data":{"job_id":"x","note":"é"}}'.encode()
    now = int(time.time())
    headers = signing.headers([secret], "msg_1", now, body)
    assert Webhook(secret).verify(body, headers)["data"]["note"] == "é"
    expected = Webhook(secret).sign("msg_1", datetime.fromtimestamp(now, UTC), body)
    assert headers["webhook-signature"] == expected
    for tampered in (body + b" ", body.replace(b"x", b"y")):
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(tampered, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):  # another id
        Webhook(secret).verify(body, {**headers, "webhook-id": "msg_2"})


def test_two_secrets_give_two_signatures_each_verifiable() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    now = int(time.time())
    headers = signing.headers([new, old], "msg_1", now, b"{}")
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(b"{}", headers)
    Webhook(new).verify(b"{}", headers)
