"""Settings of signed webhooks (`callback_url`): timeouts, concurrency, retries (part of `Settings`)."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings

DAY = 24 * 3600.0


class WebhookSettings(BaseSettings):
    """Webhook delivery (Standard Webhooks); see README, Webhooks. Callback URLs pass the
    URL-fetch policy (URL_FETCH_ALLOW_LOOPBACK included) at registration and every attempt."""

    # One attempt: connecting, then the whole exchange (a receiver that never answers
    # holds one delivery slot for at most this long); deliveries at once per process
    webhook_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    webhook_timeout_seconds: float = Field(default=15.0, gt=0)
    webhook_concurrency: int = Field(default=16, ge=1)
    # Retries: the n-th wait is min(MAX, BASE x 2^(n-1)), half of it jittered at random; an
    # event is given up once its next try would fall later than RETRY_FOR after the event
    webhook_retry_base_seconds: float = Field(default=5.0, gt=0)
    webhook_retry_max_delay_seconds: float = Field(default=3600.0, gt=0)
    webhook_retry_for_seconds: float = Field(default=2 * DAY, ge=DAY)
    # How often due deliveries are looked for in the database (a new event is tried at once)
    webhook_poll_interval_seconds: float = Field(default=1.0, gt=0)
    # After a rotation the previous secret still signs (a second signature) for this long
    webhook_secret_grace_seconds: float = Field(default=DAY, ge=0)
    # Finished deliveries are kept (listed) for this long; callback URLs up to this length
    webhook_retention_seconds: float = Field(default=7 * DAY, gt=0)
    webhook_max_url_length: int = Field(default=2048, ge=16, le=8192)

    @model_validator(mode="after")
    def _retries_outlast_a_day(self) -> WebhookSettings:
        if self.webhook_retry_max_delay_seconds < self.webhook_retry_base_seconds:
            raise ValueError("WEBHOOK_RETRY_MAX_DELAY_SECONDS must be at least WEBHOOK_RETRY_BASE_SECONDS")
        return self
