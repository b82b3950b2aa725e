"""The credit ledger's repository on each back-end: holds never overdraw and count until their
lease ends, a charge is made once per subject and never below 0, the balance is the sum of the
ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import credits as ledger
from tests.db.users import add_user

NOW = datetime(2026, 1, 1, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)


async def _hold(
    sessions: async_sessionmaker[AsyncSession], user_id: int, hold_id: str, **when: datetime
) -> bool:
    async with sessions.begin() as session:
        return await ledger.place_hold(
            session,
            hold_id=hold_id,
            user_id=user_id,
            holder="test",
            now=when.get("now", NOW),
            expires_at=when.get("expires_at", LATER),
        )


async def _available(sessions: async_sessionmaker[AsyncSession], user_id: int, now: datetime = NOW) -> int:
    async with sessions() as session:
        return await ledger.available(session, user_id=user_id, now=now)


async def _charge(sessions: async_sessionmaker[AsyncSession], user_id: int, **kwargs: object) -> str:
    values = {"hold_id": None, "reason": "analysis", "request_id": None, "detail": None, "now": NOW, **kwargs}
    async with sessions.begin() as session:
        return await ledger.charge(session, user_id=user_id, **values)  # type: ignore[arg-type]


async def test_holds_never_overdraw_and_count_until_their_lease_ends(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    user_id = await add_user(sessions, credits=2)
    assert await _hold(sessions, user_id, "h1") and await _hold(sessions, user_id, "h2")
    assert not await _hold(sessions, user_id, "h3")
    assert await _available(sessions, user_id) == 0
    # an expired hold (its process died) no longer counts, and is purged
    assert await _available(sessions, user_id, now=LATER) == 2
    assert await _hold(sessions, user_id, "h3", now=LATER, expires_at=LATER + timedelta(minutes=5))
    async with sessions.begin() as session:
        await ledger.renew_hold(session, hold_id="h3", expires_at=LATER + timedelta(hours=1))
        await ledger.purge_expired_holds(session, now=LATER + timedelta(minutes=30))
    assert await _available(sessions, user_id, now=LATER + timedelta(minutes=30)) == 1  # h3 renewed
    async with sessions.begin() as session:
        await ledger.release_hold(session, hold_id="h3")
    assert await _available(sessions, user_id, now=LATER) == 2
    assert await _available(sessions, user_id + 1000) == 0  # no such user


async def test_a_subject_is_charged_once_and_never_below_zero(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    user_id = await add_user(sessions, credits=1)
    assert await _hold(sessions, user_id, "h1")
    assert await _charge(sessions, user_id, hold_id="h1", subject_key="skin:abc") == "charged"
    assert await _charge(sessions, user_id, subject_key="skin:abc") == "already_charged"
    assert await _charge(sessions, user_id, subject_key="skin:def") == "no_credit"
    assert await _available(sessions, user_id) == 0
    async with sessions() as session:
        entries = await ledger.ledger(session, user_id=user_id)
    # the sign-up credit, then the one charge: the refused charge left no entry
    assert [(e.delta, e.subject_key) for e in entries] == [(-1, "skin:abc"), (1, None)]


async def test_the_balance_is_the_sum_of_the_ledger(sessions: async_sessionmaker[AsyncSession]) -> None:
    user_id = await add_user(sessions, credits=0)
    async with sessions.begin() as session:
        assert (
            await ledger.add_credits(
                session, user_id=user_id, amount=3, reason="refill", request_id="r", now=NOW
            )
            == 3
        )
        assert (
            await ledger.add_credits(
                session, user_id=user_id + 1000, amount=3, reason="refill", request_id=None, now=NOW
            )
            is None
        )
    assert await _charge(sessions, user_id) == "charged"
    assert await _charge(sessions, user_id) == "charged"  # without a subject: every call charges
    async with sessions() as session:
        entries = await ledger.ledger(session, user_id=user_id)
        assert await ledger.available(session, user_id=user_id, now=NOW) == 1
    assert [e.delta for e in entries] == [-1, -1, 3] and sum(e.delta for e in entries) == 1
