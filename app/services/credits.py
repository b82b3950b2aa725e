"""Credits (seed 000's "tokens"): model-backed analyses computed for a user cost one credit.

A credit is set aside (held) before the work starts and charged only when it succeeds;
a failure, a cache hit or a crash costs nothing (a crashed worker's hold expires). Holds
make concurrent requests unable to overdraw: with 5 credits, at most 5 analyses run.
Anonymous, API-key and admin callers are not metered.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core import metrics
from app.core.errors import InsufficientCredits, UserNotFound
from app.db import credits
from app.services.principals import Principal
from app.storage.atomic import is_live_peer

logger = logging.getLogger("app.credits")

HOLD_SECONDS = 600.0


@dataclass
class Metered:
    """One metered piece of work: mark `computed` when it really ran (a cache hit is free)."""

    computed: bool = False


class CreditService:
    """Holds, charges and refills, one short transaction each."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], hold_seconds: float = HOLD_SECONDS
    ) -> None:
        self.sessions = sessions
        self.hold_seconds = hold_seconds
        self.host = socket.gethostname()
        self.holder = f"{self.host}:{os.getpid()}"

    async def hold(self, principal: Principal) -> str | None:
        """Set a credit aside for `principal` (None if not metered); InsufficientCredits if none."""
        if not principal.metered or principal.user_id is None:
            return None
        hold_id = uuid.uuid4().hex
        now = datetime.now(UTC)
        async with self.sessions.begin() as session:
            placed = await credits.place_hold(
                session,
                hold_id=hold_id,
                user_id=principal.user_id,
                holder=self.holder,
                now=now,
                expires_at=now + timedelta(seconds=self.hold_seconds),
            )
        if not placed:
            raise InsufficientCredits("No credits left: ask an admin for a refill (POST /v1/refill)")
        return hold_id

    async def check(self, principal: Principal) -> None:
        """InsufficientCredits now if `principal` is metered and has nothing available (a
        cheap early refusal; `hold` is what guarantees it)."""
        if not principal.metered or principal.user_id is None:
            return
        async with self.sessions() as session:
            available = await credits.available(session, user_id=principal.user_id, now=datetime.now(UTC))
        if available < 1:
            raise InsufficientCredits("No credits left: ask an admin for a refill (POST /v1/refill)")

    async def settle(
        self,
        principal: Principal,
        hold_id: str | None,
        *,
        charged: bool,
        reason: str,
        detail: str | None = None,
    ) -> None:
        """Charge the held credit (`charged`) or give it back."""
        if hold_id is None or principal.user_id is None:
            return
        async with self.sessions.begin() as session:
            if not charged:
                await credits.release_hold(session, hold_id=hold_id)
                return
            ok = await credits.charge(
                session,
                user_id=principal.user_id,
                hold_id=hold_id,
                reason=reason,
                request_id=None,
                detail=detail,
                now=datetime.now(UTC),
            )
        if ok:
            metrics.CREDIT_CHARGES.labels(reason).inc()
        else:
            logger.warning("user %s had no credit left to charge for %s", principal.user_id, detail)

    @asynccontextmanager
    async def metered(
        self, principal: Principal, reason: str, detail: str | None = None
    ) -> AsyncIterator[Metered]:
        """Hold a credit around a piece of work; charge it if the work completes with `computed`."""
        hold_id = await self.hold(principal)
        work = Metered()
        try:
            yield work
        except BaseException:
            await self.settle(principal, hold_id, charged=False, reason=reason)
            raise
        await self.settle(principal, hold_id, charged=work.computed, reason=reason, detail=detail)

    async def refill(self, user_id: int, amount: int, reason: str = "refill") -> int:
        """Add credits; the new balance (UserNotFound if there is no such user)."""
        async with self.sessions.begin() as session:
            balance = await credits.add_credits(
                session, user_id=user_id, amount=amount, reason=reason, request_id=None, now=datetime.now(UTC)
            )
        if balance is None:
            raise UserNotFound()
        return balance

    async def recover(self) -> None:
        """Start-up: drop expired holds, and the holds of dead processes on this host (a crash
        never charges what it was computing, and frees it at once)."""
        async with self.sessions.begin() as session:
            await credits.purge_expired_holds(session, now=datetime.now(UTC))
            holders = await credits.holders_on(session, host_prefix=f"{self.host}:")
            dead = [h for h in holders if not is_live_peer(int(h.rpartition(":")[2] or 0))]
            await credits.drop_holds_of(session, holders=dead)
        if dead:
            logger.warning("released the credit holds of %d dead process(es)", len(dead))
