"""The webhooks domain's settings section, cut from `Settings` in the composition root.

Field names are the settings' own (env var names in lower case), so each reads as its setting.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.config import Settings


@dataclass(frozen=True)
class DeliverySettings:
    """Webhook registration and delivery (`WebhookService`): timeouts, concurrency, retries,
    retention, and whether callbacks may name loopback addresses (tests)."""

    webhook_connect_timeout_seconds: float
    webhook_timeout_seconds: float
    webhook_concurrency: int
    webhook_retry_base_seconds: float
    webhook_retry_max_delay_seconds: float
    webhook_retry_for_seconds: float
    webhook_poll_interval_seconds: float
    webhook_secret_grace_seconds: float
    webhook_retention_seconds: float
    webhook_max_url_length: int
    url_fetch_allow_loopback: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliverySettings:
        return cls(**{name: getattr(settings, name) for name in cls.__dataclass_fields__})
