"""Credits (seed 000's "tokens"): model-backed analyses computed for a user cost one credit.

A credit is set aside (held) before the work starts and charged only when it succeeds;
a failure, a cache hit or a crash costs nothing. Holds make concurrent requests unable to
overdraw: with 5 credits, at most 5 analyses run. A hold is a lease, never a pid: `metered`
work renews its hold's lease (`lease_seconds`) while it runs, so the hold of a process that
died (on any host) expires within a lease; a hold placed by `hold` alone (a queued job)
lasts `hold_seconds`. A charge naming its `subject` (say, the analysis cache key) is made
at most once per user and subject, whatever retries or replicas ask for it (a unique index).
Anonymous, API-key and admin callers are not metered.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core import metrics
from app.core.errors import InsufficientCredits, UserNotFound
from app.core.tasks import cancel_and_wait
from app.db import credits
from app.services.accounts.principals import Principal

logger = logging.getLogger("app.credits")

HOLD_SECONDS = 600.0
HOLD_LEASE_SECONDS = 60.0


@dataclass
class Metered:
    """One metered piece of work: mark `computed` when it really ran (a cache hit is free)."""

    computed: bool = False


class CreditService:
    """Holds, charges and refills, one short transaction each."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        hold_seconds: float = HOLD_SECONDS,
        lease_seconds: float = HOLD_LEASE_SECONDS,
    ) -> None:
        self.sessions = sessions
        self.hold_seconds = hold_seconds
        self.lease_seconds = lease_seconds
        self.holder = uuid.uuid4().hex  # this process, for the logs only (never a pid)

    async def hold(self, principal: Principal, seconds: float | None = None) -> str | None:
        """Set a credit aside for `principal` for `seconds` (default `hold_seconds`); None if
        not metered; InsufficientCredits if none is available."""
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
                expires_at=now + timedelta(seconds=seconds or self.hold_seconds),
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
        subject: str | None = None,
    ) -> None:
        """Charge the held credit (`charged`) or give it back; a `subject` already charged to
        this user is not charged again."""
        if hold_id is None or principal.user_id is None:
            return
        async with self.sessions.begin() as session:
            if not charged:
                await credits.release_hold(session, hold_id=hold_id)
                return
            outcome = await credits.charge(
                session,
                user_id=principal.user_id,
                hold_id=hold_id,
                reason=reason,
                request_id=None,
                detail=detail,
                now=datetime.now(UTC),
                subject_key=subject,
            )
        if outcome == "charged":
            metrics.CREDIT_CHARGES.labels(reason).inc()
        elif outcome == "already_charged":
            logger.info("user %s was already charged for %s", principal.user_id, subject)
        else:
            logger.warning("user %s had no credit left to charge for %s", principal.user_id, detail)

    @asynccontextmanager
    async def metered(
        self, principal: Principal, reason: str, detail: str | None = None, subject: str | None = None
    ) -> AsyncIterator[Metered]:
        """Hold a credit around a piece of work (its lease renewed while the work runs); charge
        it if the work completes with `computed` (once per `subject`, when one is named)."""
        hold_id = await self.hold(principal, self.lease_seconds)
        renewal = None
        if hold_id is not None:
            renewal = asyncio.create_task(self._renew(hold_id), name="credit-hold-lease")
        work = Metered()
        charged = False
        try:
            yield work
            charged = work.computed
        finally:
            try:
                await cancel_and_wait(renewal)
            finally:  # also when the caller is cancelled meanwhile: the hold is settled at once
                await self.settle(
                    principal, hold_id, charged=charged, reason=reason, detail=detail, subject=subject
                )

    async def _renew(self, hold_id: str) -> None:
        """Keep a running hold's lease alive."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                async with self.sessions.begin() as session:
                    until = datetime.now(UTC) + timedelta(seconds=self.lease_seconds)
                    await credits.renew_hold(session, hold_id=hold_id, expires_at=until)
            except Exception as exc:  # the database is away: the hold may lapse, never overcharge
                logger.warning("could not renew a credit hold (%s)", type(exc).__name__)

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
        """Start-up: delete expired holds (a dead process's holds expire with their lease)."""
        async with self.sessions.begin() as session:
            await credits.purge_expired_holds(session, now=datetime.now(UTC))
