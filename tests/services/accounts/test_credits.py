"""app.services.accounts.credits: holds that never overdraw, charges only for computed work (once
per subject), refills and the start-up purge of expired holds, over a real database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.errors import InsufficientCredits, UserNotFound
from app.db import credits as ledger
from app.db.models import CreditHold
from app.services.accounts.credits import CreditService
from app.services.accounts.principals import ANONYMOUS_PRINCIPAL, Principal
from tests.db.users import add_user

Sessions = async_sessionmaker[AsyncSession]


def user(user_id: int) -> Principal:
    return Principal(id=f"user:{user_id}", kind="user", user_id=user_id)


async def balance(sessions: Sessions, user_id: int) -> int:
    async with sessions() as session:
        return await ledger.available(session, user_id=user_id, now=datetime.now(UTC))


async def holds(sessions: Sessions) -> int:
    async with sessions() as session:
        return int((await session.execute(select(func.count()).select_from(CreditHold))).scalar_one())


async def test_unmetered_callers_hold_nothing_and_pay_nothing(sessions: Sessions) -> None:
    service = CreditService(sessions)
    admin_id = await add_user(sessions, is_admin=True)
    for principal in (
        ANONYMOUS_PRINCIPAL,
        Principal(id="key:1", kind="api_key"),
        Principal(id=f"user:{admin_id}", kind="admin", user_id=admin_id),
    ):
        assert await service.hold(principal) is None
        await service.check(principal)
        async with service.metered(principal, "classify") as work:
            work.computed = True
    assert await holds(sessions) == 0


async def test_holds_never_overdraw_and_a_released_hold_frees_its_credit(sessions: Sessions) -> None:
    user_id = await add_user(sessions, credits=2)
    service = CreditService(sessions)
    first = await service.hold(user(user_id))
    second = await service.hold(user(user_id))
    assert first and second and first != second
    with pytest.raises(InsufficientCredits):
        await service.hold(user(user_id))
    with pytest.raises(InsufficientCredits):
        await service.check(user(user_id))
    await service.settle(user(user_id), first, charged=False, reason="classify")
    assert await balance(sessions, user_id) == 1
    await service.check(user(user_id))


async def test_concurrent_holds_take_exactly_the_balance(sessions: Sessions) -> None:
    user_id = await add_user(sessions, credits=3)
    service = CreditService(sessions)
    results = await asyncio.gather(*(service.hold(user(user_id)) for _ in range(8)), return_exceptions=True)
    assert sum(isinstance(r, str) for r in results) == 3
    assert sum(isinstance(r, InsufficientCredits) for r in results) == 5


async def test_metered_work_is_charged_only_when_computed(sessions: Sessions) -> None:
    user_id = await add_user(sessions, credits=3)
    service = CreditService(sessions)
    async with service.metered(user(user_id), "classify") as work:
        assert await balance(sessions, user_id) == 2  # held while it runs
    assert await balance(sessions, user_id) == 3  # a cache hit: nothing charged
    async with service.metered(user(user_id), "classify", detail="img-1") as work:
        work.computed = True
    assert await balance(sessions, user_id) == 2
    with pytest.raises(RuntimeError):
        async with service.metered(user(user_id), "classify") as work:
            work.computed = True
            raise RuntimeError("the analysis failed")
    assert await balance(sessions, user_id) == 2
    assert await holds(sessions) == 0
    async with sessions() as session:
        entries = await ledger.ledger(session, user_id=user_id)
    assert [(e.delta, e.reason, e.detail) for e in entries] == [
        (-1, "classify", "img-1"),
        (3, "initial", None),
    ]


async def test_a_subject_is_charged_once_whatever_retries_ask(sessions: Sessions) -> None:
    user_id = await add_user(sessions, credits=5)
    service = CreditService(sessions)
    for _ in range(3):
        async with service.metered(user(user_id), "contours", subject="cache-key-1") as work:
            work.computed = True
    assert await balance(sessions, user_id) == 4
    async with service.metered(user(user_id), "contours", subject="cache-key-2") as work:
        work.computed = True
    assert await balance(sessions, user_id) == 3


async def test_metered_work_without_credit_is_refused_before_it_runs(sessions: Sessions) -> None:
    user_id = await add_user(sessions, credits=0)
    service = CreditService(sessions)
    ran = False
    with pytest.raises(InsufficientCredits):
        async with service.metered(user(user_id), "classify"):
            ran = True
    assert not ran


async def test_refill_returns_the_new_balance_and_refuses_unknown_users(sessions: Sessions) -> None:
    user_id = await add_user(sessions, credits=1)
    service = CreditService(sessions)
    assert await service.refill(user_id, 4) == 5
    assert await balance(sessions, user_id) == 5
    with pytest.raises(UserNotFound):
        await service.refill(user_id + 1000, 4)


async def test_recover_purges_expired_holds_and_keeps_live_ones(sessions: Sessions) -> None:
    user_id = await add_user(sessions, credits=3)
    service = CreditService(sessions)
    await service.hold(user(user_id), seconds=0.001)
    await service.hold(user(user_id), seconds=3600)
    await asyncio.sleep(0.01)
    assert await balance(sessions, user_id) == 2  # the expired hold no longer counts
    await service.recover()
    assert await holds(sessions) == 1


async def test_work_done_then_cancelled_while_its_hold_is_settled_is_charged_and_stays_cancelled(
    sessions: Sessions,
) -> None:
    user_id = await add_user(sessions, credits=1)
    service = CreditService(sessions)
    finish, after = asyncio.Event(), []

    async def metered_work() -> None:
        async with service.metered(user(user_id), "classify") as work:
            await finish.wait()
            work.computed = True
        after.append("carried on")

    task = asyncio.create_task(metered_work())
    while await holds(sessions) == 0:
        await asyncio.sleep(0.01)
    finish.set()
    await asyncio.sleep(0)  # the work is done; its hold's lease renewal is being stopped
    task.cancel()  # the request's task is cancelled then (a shut-down, a timeout)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert after == []  # the cancel reached the caller
    assert await holds(sessions) == 0 and await balance(sessions, user_id) == 0  # and it was charged
