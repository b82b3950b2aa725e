"""Credit balances, holds and the ledger (keyword-only repository functions).

The balance column always equals the sum of the user's ledger entries: every change of
one is made with an entry in the same transaction. A hold sets a credit aside while an
analysis runs (a lease: it counts until `expires_at`); what is available is the balance
minus live holds. A charge for a subject is made at most once per user (unique index).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import delete, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.engine import insert_ignoring_conflicts, rowcount
from app.db.models import CreditEntry, CreditHold, User


async def place_hold(
    session: AsyncSession, *, hold_id: str, user_id: int, holder: str, now: datetime, expires_at: datetime
) -> bool:
    """Set one credit aside if one is available; False if none is (never overdraws).

    One INSERT ... SELECT decides and writes: atomic on SQLite (the statement takes the
    write lock before it reads); on PostgreSQL the user's row is locked first so that
    concurrent holds of one user queue behind each other.
    """
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        await session.execute(select(User.id).where(User.id == user_id).with_for_update())
    live = (
        select(func.count())
        .select_from(CreditHold)
        .where(CreditHold.user_id == user_id, CreditHold.expires_at > now)
        .scalar_subquery()
    )
    balance = select(User.credits).where(User.id == user_id).scalar_subquery()
    result = await session.execute(
        insert(CreditHold).from_select(
            ["id", "user_id", "holder", "expires_at"],
            select(
                literal(hold_id),
                literal(user_id),
                literal(holder),
                literal(expires_at, CreditHold.expires_at.type),
            ).where(balance - live >= 1),
        )
    )
    return rowcount(result) == 1


async def available(session: AsyncSession, *, user_id: int, now: datetime) -> int:
    """The balance minus live holds (0 for an unknown user)."""
    live = (
        select(func.count())
        .select_from(CreditHold)
        .where(CreditHold.user_id == user_id, CreditHold.expires_at > now)
        .scalar_subquery()
    )
    row = await session.execute(select(User.credits - live).where(User.id == user_id))
    return int(row.scalar_one_or_none() or 0)


async def release_hold(session: AsyncSession, *, hold_id: str) -> None:
    await session.execute(delete(CreditHold).where(CreditHold.id == hold_id))


async def charge(
    session: AsyncSession,
    *,
    user_id: int,
    hold_id: str | None,
    reason: str,
    request_id: str | None,
    detail: str | None,
    now: datetime,
    subject_key: str | None = None,
) -> Literal["charged", "no_credit", "already_charged"]:
    """Take one credit (and drop its hold); never below 0.

    With `subject_key` (what is paid for: an analysis cache key, a job key), the ledger entry is
    written first with `INSERT ... ON CONFLICT DO NOTHING` on the unique (user_id, subject_key):
    a retry, or another replica, finding it there charges nothing ("already_charged").
    """
    if hold_id is not None:
        await release_hold(session, hold_id=hold_id)
    entry = {
        "user_id": user_id,
        "delta": -1,
        "reason": reason,
        "request_id": request_id,
        "detail": detail,
        "created_at": now,
        "subject_key": subject_key,
    }
    if subject_key is None:
        inserted = await session.execute(insert(CreditEntry).values(entry).returning(CreditEntry.id))
    else:
        inserted = await session.execute(
            insert_ignoring_conflicts(session, CreditEntry, entry).returning(CreditEntry.id)
        )
    entry_id = inserted.scalar_one_or_none()
    if entry_id is None:
        return "already_charged"
    result = await session.execute(
        update(User).where(User.id == user_id, User.credits >= 1).values(credits=User.credits - 1)
    )
    if rowcount(result) != 1:
        await session.execute(delete(CreditEntry).where(CreditEntry.id == entry_id))
        return "no_credit"
    return "charged"


async def renew_hold(session: AsyncSession, *, hold_id: str, expires_at: datetime) -> None:
    """Extend a hold's lease (its work is still running)."""
    await session.execute(update(CreditHold).where(CreditHold.id == hold_id).values(expires_at=expires_at))


async def add_credits(
    session: AsyncSession, *, user_id: int, amount: int, reason: str, request_id: str | None, now: datetime
) -> int | None:
    """Add `amount` credits; the new balance, or None if there is no such user."""
    result = await session.execute(
        update(User).where(User.id == user_id).values(credits=User.credits + amount).returning(User.credits)
    )
    balance = result.scalar_one_or_none()
    if balance is not None:
        session.add(
            CreditEntry(user_id=user_id, delta=amount, reason=reason, request_id=request_id, created_at=now)
        )
    return balance


async def ledger(session: AsyncSession, *, user_id: int, limit: int = 100) -> list[CreditEntry]:
    rows = await session.execute(
        select(CreditEntry).where(CreditEntry.user_id == user_id).order_by(CreditEntry.id.desc()).limit(limit)
    )
    return list(rows.scalars())


async def purge_expired_holds(session: AsyncSession, *, now: datetime) -> None:
    await session.execute(delete(CreditHold).where(CreditHold.expires_at <= now))
