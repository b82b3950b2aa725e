"""Webhook secrets and deliveries (keyword-only repository functions); see `app.services.webhooks`.

A delivery is claimed with one conditional `UPDATE` (still `pending`, due): whoever changes
the row holds the attempt until its lease ends, on every back-end and across replicas; an
attempt's outcome is written only under its own claim token.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.engine import insert_ignoring_conflicts, rowcount
from app.db.models import WebhookDelivery, WebhookSecret

AWAITING, PENDING, DELIVERED, FAILED = "awaiting", "pending", "delivered", "failed"


async def get_or_create_secret(
    session: AsyncSession, *, principal: str, candidate: str, now: datetime
) -> WebhookSecret:
    """The principal's secret row: `candidate` if it had none (whoever comes first wins)."""
    await session.execute(
        insert_ignoring_conflicts(
            session, WebhookSecret, {"principal": principal, "secret": candidate, "created_at": now}
        )
    )
    row = await session.execute(select(WebhookSecret).where(WebhookSecret.principal == principal))
    return row.scalar_one()


async def rotate_secret(
    session: AsyncSession, *, principal: str, new: str, now: datetime, grace: timedelta
) -> WebhookSecret:
    """Replace the principal's secret by `new`; the old one stays as `previous` for `grace`."""
    current = await get_or_create_secret(session, principal=principal, candidate=new, now=now)
    if current.secret != new:
        await session.execute(
            update(WebhookSecret)
            .where(WebhookSecret.principal == principal)
            .values(secret=new, previous=current.secret, previous_until=now + grace, created_at=now)
        )
    row = await session.execute(
        select(WebhookSecret)
        .where(WebhookSecret.principal == principal)
        .execution_options(populate_existing=True)
    )
    return row.scalar_one()


async def find_secret(session: AsyncSession, *, principal: str) -> WebhookSecret | None:
    """The principal's secret row, if any."""
    row = await session.execute(select(WebhookSecret).where(WebhookSecret.principal == principal))
    return row.scalar_one_or_none()


async def add(
    session: AsyncSession, *, delivery_id: str, principal: str, subject: str, url: str, now: datetime
) -> None:
    """A delivery `awaiting` the event of `subject`."""
    session.add(
        WebhookDelivery(
            id=delivery_id,
            principal=principal,
            subject=subject,
            url=url,
            status=AWAITING,
            attempts=0,
            created_at=now,
        )
    )


async def fire(
    session: AsyncSession, *, subject: str, event_type: str, payload: str, now: datetime
) -> list[str]:
    """Every delivery awaiting `subject`'s event becomes due now with `payload`; their ids
    (none if the event was fired already: an event fires once)."""
    ids = list(
        (
            await session.execute(
                select(WebhookDelivery.id).where(
                    WebhookDelivery.subject == subject, WebhookDelivery.status == AWAITING
                )
            )
        ).scalars()
    )
    fired = []
    for delivery_id in ids:
        result = await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == AWAITING)
            .values(status=PENDING, event_type=event_type, payload=payload, next_attempt_at=now, fired_at=now)
        )
        if rowcount(result) == 1:
            fired.append(delivery_id)
    return fired


async def due(session: AsyncSession, *, now: datetime, limit: int) -> list[str]:
    """Ids of pending deliveries whose next attempt is due, the longest waiting first."""
    rows = await session.execute(
        select(WebhookDelivery.id)
        .where(WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    )
    return list(rows.scalars())


async def claim(
    session: AsyncSession, *, delivery_id: str, token: str, now: datetime, until: datetime
) -> WebhookDelivery | None:
    """Take the next attempt of a due delivery until `until` (counted as an attempt); None if
    it is not due any more (another process took it, or it finished)."""
    result = await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == PENDING,
            WebhookDelivery.next_attempt_at <= now,
        )
        .values(claim=token, next_attempt_at=until, attempts=WebhookDelivery.attempts + 1)
    )
    if rowcount(result) != 1:
        return None
    row = await session.execute(
        select(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .execution_options(populate_existing=True)
    )
    return row.scalar_one()


async def record(session: AsyncSession, *, delivery_id: str, token: str, values: dict[str, Any]) -> bool:
    """Write an attempt's outcome (`status`, `next_attempt_at`, ...) if the claim is still ours."""
    result = await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.claim == token)
        .values(claim=None, **values)
    )
    return rowcount(result) == 1


async def awaiting(session: AsyncSession, *, before: datetime, limit: int) -> list[tuple[str, str]]:
    """(id, subject) of deliveries registered before `before` still awaiting their event."""
    rows = await session.execute(
        select(WebhookDelivery.id, WebhookDelivery.subject)
        .where(WebhookDelivery.status == AWAITING, WebhookDelivery.created_at < before)
        .order_by(WebhookDelivery.created_at)
        .limit(limit)
    )
    return [(str(r[0]), str(r[1])) for r in rows]


async def recent(session: AsyncSession, *, principal: str, limit: int) -> list[WebhookDelivery]:
    """The principal's deliveries, newest first."""
    rows = await session.execute(
        select(WebhookDelivery)
        .where(WebhookDelivery.principal == principal)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
        .limit(limit)
    )
    return list(rows.scalars())


async def purge(session: AsyncSession, *, finished_before: datetime, awaiting_before: datetime) -> int:
    """Delete deliveries finished before `finished_before`, and ones still awaiting an event
    registered before `awaiting_before` (its subject is gone); how many."""
    finished = await session.execute(
        delete(WebhookDelivery).where(
            WebhookDelivery.status.in_((DELIVERED, FAILED)), WebhookDelivery.finished_at < finished_before
        )
    )
    stale = await session.execute(
        delete(WebhookDelivery).where(
            WebhookDelivery.status == AWAITING, WebhookDelivery.created_at < awaiting_before
        )
    )
    return rowcount(finished) + rowcount(stale)


async def erase_principal(session: AsyncSession, *, principal: str) -> int:
    """Forget a principal's secret and deliveries (account erasure); how many deliveries."""
    await session.execute(delete(WebhookSecret).where(WebhookSecret.principal == principal))
    result = await session.execute(delete(WebhookDelivery).where(WebhookDelivery.principal == principal))
    return rowcount(result)
