"""Webhook schemas: a principal's signing secret and its recent deliveries."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class WebhookSecretRead(BaseModel):
    """The secret that signs this caller's webhooks (Standard Webhooks `whsec_...`)."""

    secret: str = Field(examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])
    created_at: datetime
    previous_valid_until: datetime | None = Field(
        default=None, description="After a rotation: until then the previous secret signs too"
    )


class WebhookDeliveryRead(BaseModel):
    """One event for one callback URL and how its delivery went."""

    id: str = Field(description="The `webhook-id` header of every attempt (drop repeats by it)")
    subject: str = Field(description="What the event is about (the job id)")
    url: str
    event_type: str | None = Field(examples=["contour_job.completed"], description="None until it happens")
    status: str = Field(
        examples=["delivered"], description="awaiting (the event), pending (to be tried), delivered, failed"
    )
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    fired_at: datetime | None
    finished_at: datetime | None


class WebhookDeliveryPage(BaseModel):
    """The caller's latest deliveries, newest first."""

    deliveries: list[WebhookDeliveryRead]
