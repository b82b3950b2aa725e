"""Idempotency-Key rows (keyword-only repository functions); see `app.services.images.idempotency`.

A claim is taken with one `INSERT ... ON CONFLICT DO NOTHING` (a new key) or one conditional
`UPDATE` (a key whose earlier claim ended or whose lease ran out): whoever changes the row
holds the claim, on every back-end and across replicas.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.engine import insert_ignoring_conflicts, rowcount
from app.db.models import IdempotencyKey


async def claim(
    session: AsyncSession, *, key_hash: str, scope_hash: str, token: str, now: datetime, until: datetime
) -> bool:
    """Claim a key until `until`; False if another request holds a live claim on it."""
    inserted = await session.execute(
        insert_ignoring_conflicts(
            session,
            IdempotencyKey,
            {
                "key_hash": key_hash,
                "scope_hash": scope_hash,
                "claim_token": token,
                "claimed_until": until,
                "created_at": now,
                "expires_at": until,
            },
        )
    )
    if rowcount(inserted) == 1:
        return True
    taken = await session.execute(
        update(IdempotencyKey)
        .where(
            IdempotencyKey.key_hash == key_hash,
            or_(IdempotencyKey.claimed_until.is_(None), IdempotencyKey.claimed_until <= now),
        )
        .values(claim_token=token, claimed_until=until)
    )
    return rowcount(taken) == 1


async def renew(session: AsyncSession, *, key_hash: str, token: str, until: datetime) -> bool:
    """Extend our claim's lease; False if it is no longer ours."""
    result = await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.key_hash == key_hash, IdempotencyKey.claim_token == token)
        .values(claimed_until=until)
    )
    return rowcount(result) == 1


async def release(session: AsyncSession, *, key_hash: str, token: str) -> None:
    """End our claim: a key that never recorded anything goes, a recorded one stays unclaimed."""
    mine = (IdempotencyKey.key_hash == key_hash, IdempotencyKey.claim_token == token)
    await session.execute(delete(IdempotencyKey).where(*mine, IdempotencyKey.image_id.is_(None)))
    await session.execute(update(IdempotencyKey).where(*mine).values(claim_token=None, claimed_until=None))


async def record(
    session: AsyncSession,
    *,
    key_hash: str,
    token: str,
    fingerprint: str,
    image_id: str,
    now: datetime,
    expires_at: datetime,
) -> bool:
    """Store what our claimed key created (in the transaction that creates it); False if the
    claim is no longer ours (its lease ran out and another request took it)."""
    result = await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.key_hash == key_hash, IdempotencyKey.claim_token == token)
        .values(fingerprint=fingerprint, image_id=image_id, created_at=now, expires_at=expires_at)
    )
    return rowcount(result) == 1


async def load(session: AsyncSession, *, key_hash: str, now: datetime) -> IdempotencyKey | None:
    """A key's unexpired record (image id and fingerprint), if it has one."""
    row = await session.execute(
        select(IdempotencyKey).where(
            IdempotencyKey.key_hash == key_hash,
            IdempotencyKey.image_id.is_not(None),
            IdempotencyKey.expires_at > now,
        )
    )
    return row.scalar_one_or_none()


async def import_records(session: AsyncSession, *, rows: Sequence[dict[str, Any]]) -> int:
    """Insert records kept elsewhere (an earlier version's files); existing keys win."""
    if not rows:
        return 0
    result = await session.execute(insert_ignoring_conflicts(session, IdempotencyKey, list(rows)))
    return max(rowcount(result), 0)


async def erase(session: AsyncSession, *, scope_hash: str, image_ids: Sequence[str]) -> int:
    """Delete a scope's keys, and any key naming one of `image_ids`; how many."""
    removed = rowcount(
        await session.execute(delete(IdempotencyKey).where(IdempotencyKey.scope_hash == scope_hash))
    )
    ids = list(image_ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        result = await session.execute(delete(IdempotencyKey).where(IdempotencyKey.image_id.in_(chunk)))
        removed += rowcount(result)
    return removed


async def purge_expired(session: AsyncSession, *, now: datetime) -> int:
    """Delete expired keys that nobody claims; how many."""
    result = await session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.expires_at <= now,
            or_(IdempotencyKey.claimed_until.is_(None), IdempotencyKey.claimed_until <= now),
        )
    )
    return rowcount(result)
