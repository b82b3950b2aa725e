"""app.services.webhooks.settings: the delivery section follows its env vars."""

from __future__ import annotations

import pytest

from app.core.config import Settings
from app.services.webhooks.service import webhook_policy
from app.services.webhooks.settings import DeliverySettings


def test_the_section_follows_its_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_TIMEOUT_SECONDS", "3")
    monkeypatch.setenv("WEBHOOK_CONNECT_TIMEOUT_SECONDS", "1.5")
    monkeypatch.setenv("WEBHOOK_CONCURRENCY", "2")
    monkeypatch.setenv("WEBHOOK_MAX_URL_LENGTH", "100")
    monkeypatch.setenv("URL_FETCH_ALLOW_LOOPBACK", "true")
    section = DeliverySettings.from_settings(Settings(_env_file=None))
    assert (section.webhook_concurrency, section.webhook_max_url_length) == (2, 100)
    policy = webhook_policy(section)  # the fetch policy of every attempt, from the section
    assert (policy.connect_timeout, policy.read_timeout, policy.total_timeout) == (1.5, 3.0, 3.0)
    assert policy.allow_loopback and policy.max_redirects == 0
