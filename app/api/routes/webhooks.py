"""Webhook routes: the caller's signing secret (read, rotate) and its recent deliveries."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from app.api.deps import CurrentPrincipal, WebhooksDep
from app.api.routing import DeclaredRouter, Policy
from app.schemas.problems import UNAUTHORIZED, problem_docs
from app.schemas.webhooks import WebhookDeliveryPage, WebhookDeliveryRead, WebhookSecretRead
from app.services.webhooks.service import SecretView

router = DeclaredRouter(Policy(authenticate=True, rate_limit="default"), tags=["webhooks"])

NEEDS_IDENTITY = problem_docs(
    UNAUTHORIZED,
    (403, "callback_needs_credentials", "Webhooks need an API key or a user token"),
)
MAX_LISTED = 200


def _secret(view: SecretView) -> WebhookSecretRead:
    return WebhookSecretRead(
        secret=view.secret, created_at=view.created_at, previous_valid_until=view.previous_valid_until
    )


@router.get(
    "/api/v1/webhooks/secret",
    response_model=WebhookSecretRead,
    summary="The secret that signs your webhooks",
    responses=NEEDS_IDENTITY,
)
async def webhook_secret(webhooks: WebhooksDep, principal: CurrentPrincipal) -> WebhookSecretRead:
    """Created on first use, one per API key or user; verify `webhook-signature` with it
    (any Standard Webhooks library)."""
    return _secret(await webhooks.secret(principal))


@router.post(
    "/api/v1/webhooks/secret/rotate",
    response_model=WebhookSecretRead,
    summary="Replace your webhook secret",
    responses=NEEDS_IDENTITY,
)
async def rotate_webhook_secret(webhooks: WebhooksDep, principal: CurrentPrincipal) -> WebhookSecretRead:
    """A new secret signs from now on; the previous one adds a second signature until
    `previous_valid_until` (WEBHOOK_SECRET_GRACE_SECONDS), so receivers can switch over."""
    return _secret(await webhooks.rotate(principal))


@router.get(
    "/api/v1/webhooks/deliveries",
    response_model=WebhookDeliveryPage,
    summary="Your recent webhook deliveries and their outcomes",
    responses=NEEDS_IDENTITY,
)
async def webhook_deliveries(
    webhooks: WebhooksDep,
    principal: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=MAX_LISTED)] = 50,
) -> WebhookDeliveryPage:
    """Newest first: each event's status (awaiting, pending, delivered, failed), attempts,
    the last answer or error and the next try. Finished ones are kept WEBHOOK_RETENTION_SECONDS."""
    rows = await webhooks.recent(principal, limit)
    return WebhookDeliveryPage(
        deliveries=[WebhookDeliveryRead.model_validate(row, from_attributes=True) for row in rows]
    )
