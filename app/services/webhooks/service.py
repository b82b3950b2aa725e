"""Webhooks: callback URLs registered for events, delivered signed, at least once, durably.

- **Registration** (`register`): the URL passes the URL-fetch SSRF policy now (its host
  resolved: a private, loopback or unresolvable host is a 400); a delivery row `awaiting`
  its event is written, its id (`msg_...`) the stable `webhook-id` of every attempt.
  Anonymous callers cannot register (no secret of their own): 403.
- **Events** (`fire`): the body is fixed once (stored), every awaiting delivery of the
  subject becomes due. A process that died between an event and `fire` is covered by the
  reconciler, which asks the event source (`set_source`) about subjects awaiting too long.
- **Delivery** (`start`): a loop claims due rows with a lease (one conditional UPDATE: one
  process per attempt, whatever the number of workers or replicas), at most
  WEBHOOK_CONCURRENCY at once, each attempt bounded by WEBHOOK_TIMEOUT_SECONDS, the URL
  checked again (DNS can change). A failure is tried again with exponential backoff and
  jitter (`schedule`) until WEBHOOK_RETRY_FOR_SECONDS after the event; an attempt cut by a
  crash is retried when its lease ends. Receivers drop repeats by `webhook-id`.
- **On the job engine** (`use_engine`: scale-out mode, where the PostgreSQL job engine runs):
  an attempt is a procrastinate task (`webhook_delivery`, queue `webhooks`, run by the job
  workers with a concurrency of its own, WEBHOOK_CONCURRENCY), deferred when the event fires
  and deferred again `schedule_at` the backoff's next time after a failure. The deliveries
  table stays the source of truth (claims, outcomes, `GET /api/v1/webhooks/deliveries`): a
  task whose claim fails does nothing. The polled loop then only reconciles, purges, and
  defers again a delivery due for RECONCILE_SECONDS that no task carried (a deferral lost
  to an outage, an attempt cut by a crash); `queueing_lock` = the delivery id keeps one
  waiting task per delivery.
- **Secrets**: one per principal (`whsec_...`, shared by every replica); a rotation keeps the
  previous one signing too (a second signature) for WEBHOOK_SECRET_GRACE_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets as random_tokens
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.errors import CallbackNeedsCredentials
from app.core.tasks import cancel_and_wait
from app.db import webhooks as rows
from app.db.models import WebhookDelivery, WebhookSecret
from app.services.accounts.principals import Principal
from app.services.fetch.url_policy import UrlPolicy, not_allowed
from app.services.webhooks import sender, signing
from app.services.webhooks.schedule import next_attempt
from app.services.webhooks.settings import DeliverySettings

logger = logging.getLogger("app.webhooks")

RECONCILE_SECONDS = 15.0  # subjects awaiting their event longer than this are asked about
ENGINE_TASK = "webhook_delivery"  # the procrastinate task of one attempt (job engine mode)
ENGINE_QUEUE = "webhooks"
ENGINE_SWEEP_LIMIT = 100
PURGE_SECONDS = 3600.0
LEASE_MARGIN_SECONDS = 30.0


@dataclass(frozen=True)
class WebhookEvent:
    """What happened: `type` (e.g. `contour_job.completed`) and its data."""

    type: str
    data: dict[str, Any]
    timestamp: datetime


# The event of a subject: None while it has not happened, LookupError if the subject is gone.
EventSource = Callable[[str], Awaitable[WebhookEvent | None]]


@dataclass(frozen=True)
class SecretView:
    """A principal's signing secret; the previous one signs too until `previous_valid_until`."""

    secret: str
    created_at: datetime
    previous_valid_until: datetime | None


def webhook_policy(settings: DeliverySettings) -> UrlPolicy:
    """The URL-fetch policy (addresses, loopback for tests) with the webhook timeouts."""
    return UrlPolicy(
        max_redirects=0,
        connect_timeout=settings.webhook_connect_timeout_seconds,
        read_timeout=settings.webhook_timeout_seconds,
        total_timeout=settings.webhook_timeout_seconds,
        allow_loopback=settings.url_fetch_allow_loopback,
    )


class WebhookService:
    """Registers callbacks, fires events, delivers them (see the module docstring)."""

    def __init__(self, settings: DeliverySettings, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.policy = webhook_policy(settings)
        self._source: EventSource | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.Task[None] | None = None
        self._attempts: set[asyncio.Task[None]] = set()
        self._last_reconcile = self._last_purge = 0.0
        self._failing = False
        self._engine: Any = None  # a procrastinate App when attempts are its tasks (`use_engine`)

    def use_engine(self, app: Any, add_queue: Callable[[str, int], None]) -> None:
        """Make every attempt a task of the procrastinate `app` (see the module docstring);
        `add_queue(queue, concurrency)` has the job workers work the webhooks' queue."""
        app.task(name=ENGINE_TASK, queue=ENGINE_QUEUE)(self.deliver)
        add_queue(ENGINE_QUEUE, self.settings.webhook_concurrency)
        self._engine = app

    async def _defer(self, delivery_id: str, at: datetime | None = None) -> bool:
        """Queue an attempt of `delivery_id` on the job engine (at `at`, else now); False if one
        is waiting already or the engine cannot be reached (the sweep defers it later)."""
        import procrastinate.exceptions as errors

        options: dict[str, Any] = {"queueing_lock": delivery_id}
        if at is not None:
            options["schedule_at"] = at
        try:
            await self._engine.tasks[ENGINE_TASK].configure(**options).defer_async(delivery_id=delivery_id)
        except errors.AlreadyEnqueued:
            return False
        except Exception as exc:
            logger.warning(
                "webhook %s: not deferred (%s); the sweep retries", delivery_id, type(exc).__name__
            )
            return False
        return True

    async def deliver(self, delivery_id: str) -> None:
        """The job engine's task: one attempt of `delivery_id`, if it is still due (claimed
        first: a repeat or a late task does nothing); a failure defers the next attempt."""
        now = datetime.now(UTC)
        token = random_tokens.token_hex(16)
        async with self.sessions.begin() as session:
            claimed = await rows.claim(
                session, delivery_id=delivery_id, token=token, now=now, until=self._lease_end(now)
            )
        if claimed is not None:
            await self._attempt(claimed, token)

    def _lease_end(self, now: datetime) -> datetime:
        return now + timedelta(
            seconds=self.settings.webhook_connect_timeout_seconds
            + self.settings.webhook_timeout_seconds
            + LEASE_MARGIN_SECONDS
        )

    def set_source(self, source: EventSource) -> None:
        """Where the reconciler asks about subjects still awaiting their event."""
        self._source = source

    # -- registration and events ---------------------------------------------------------

    async def check_callback(self, url: str, principal: Principal) -> None:
        """Refuse a callback now: anonymous (403), too long, not allowed or unresolvable (400)."""
        if principal.kind == "anonymous":
            raise CallbackNeedsCredentials()
        limit = self.settings.webhook_max_url_length
        if len(url) > limit:
            raise not_allowed(sender.WHERE, f"it is longer than {limit} characters", "too_long")
        await sender.check(url, self.policy)

    async def register(self, principal: Principal, subject: str, url: str) -> str:
        """Record a delivery of `subject`'s event to `url` (checked by `check_callback`); its id."""
        delivery_id = "msg_" + uuid.uuid4().hex
        async with self.sessions.begin() as session:
            # Its secret exists from now on: a receiver can be set up before the first event
            await rows.get_or_create_secret(
                session, principal=principal.id, candidate=signing.new_secret(), now=datetime.now(UTC)
            )
            await rows.add(
                session,
                delivery_id=delivery_id,
                principal=principal.id,
                subject=subject,
                url=url,
                now=datetime.now(UTC),
            )
        return delivery_id

    async def fire(self, subject: str, event: WebhookEvent) -> int:
        """Make every delivery awaiting `subject` due, with the event's body; how many."""
        body = json.dumps(
            {"type": event.type, "timestamp": event.timestamp.isoformat(), "data": event.data},
            separators=(",", ":"),
            sort_keys=True,
        )
        async with self.sessions.begin() as session:
            fired = await rows.fire(
                session, subject=subject, event_type=event.type, payload=body, now=datetime.now(UTC)
            )
        if self._engine is not None:
            for delivery_id in fired:
                await self._defer(delivery_id)
        elif fired and self._wake is not None:
            self._wake.set()
        return len(fired)

    # -- secrets and deliveries of a principal --------------------------------------------

    async def secret(self, principal: Principal) -> SecretView:
        """The principal's secret, created on first use."""
        self._identified(principal)
        async with self.sessions.begin() as session:
            row = await rows.get_or_create_secret(
                session, principal=principal.id, candidate=signing.new_secret(), now=datetime.now(UTC)
            )
        return _secret_view(row, datetime.now(UTC))

    async def rotate(self, principal: Principal) -> SecretView:
        """A new secret; the old one keeps signing for WEBHOOK_SECRET_GRACE_SECONDS."""
        self._identified(principal)
        now = datetime.now(UTC)
        grace = timedelta(seconds=self.settings.webhook_secret_grace_seconds)
        async with self.sessions.begin() as session:
            row = await rows.rotate_secret(
                session, principal=principal.id, new=signing.new_secret(), now=now, grace=grace
            )
        return _secret_view(row, now)

    async def recent(self, principal: Principal, limit: int) -> list[WebhookDelivery]:
        """The principal's latest deliveries and their outcomes, newest first."""
        self._identified(principal)
        async with self.sessions() as session:
            return await rows.recent(session, principal=principal.id, limit=limit)

    async def erase(self, principal_id: str) -> int:
        """Forget a principal's secret and deliveries (account erasure)."""
        async with self.sessions.begin() as session:
            return await rows.erase_principal(session, principal=principal_id)

    @staticmethod
    def _identified(principal: Principal) -> None:
        if principal.kind == "anonymous":
            raise CallbackNeedsCredentials()

    # -- delivery -------------------------------------------------------------------------

    async def start(self) -> None:
        """Run the delivery loop in this process."""
        self._wake = asyncio.Event()
        self._loop = asyncio.create_task(self._run(), name="webhooks")

    async def stop(self) -> None:
        """Stop delivering; attempts cut short are retried (by any process) when their lease ends."""
        tasks = [self._loop, *self._attempts]
        self._loop, self._attempts = None, set()
        await cancel_and_wait(*tasks)

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            try:
                await self.run_once()
                if self._failing:
                    logger.info("webhook deliveries resumed")
                self._failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is down: try again at the next tick
                if not self._failing:
                    logger.warning("webhook pass failed (%s: %s); retrying", type(exc).__name__, exc)
                self._failing = True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.webhook_poll_interval_seconds):
                    await self._wake.wait()
            self._wake.clear()

    async def run_once(self) -> int:
        """One pass: reconcile and purge when their time comes, then start due attempts (as
        many as there are free slots); how many attempts started."""
        clock = time.monotonic()
        if clock - self._last_reconcile >= RECONCILE_SECONDS:
            self._last_reconcile = clock
            await self._reconcile()
        if clock - self._last_purge >= PURGE_SECONDS:
            self._last_purge = clock
            await self._purge()
        if self._engine is not None:
            return await self._sweep()
        free = self.settings.webhook_concurrency - len(self._attempts)
        if free <= 0:
            return 0
        now = datetime.now(UTC)
        lease = self._lease_end(now)
        started = 0
        async with self.sessions.begin() as session:
            due = await rows.due(session, now=now, limit=free)
        for delivery_id in due:
            token = random_tokens.token_hex(16)
            async with self.sessions.begin() as session:
                claimed = await rows.claim(
                    session, delivery_id=delivery_id, token=token, now=now, until=lease
                )
            if claimed is None:
                continue  # another process took it
            task = asyncio.create_task(self._attempt(claimed, token), name=f"webhook-{delivery_id}")
            self._attempts.add(task)
            task.add_done_callback(self._attempt_done)
            started += 1
        return started

    async def _sweep(self) -> int:
        """Job engine mode: defer deliveries due for RECONCILE_SECONDS that no task carries;
        how many were deferred."""
        before = datetime.now(UTC) - timedelta(seconds=RECONCILE_SECONDS)
        async with self.sessions() as session:
            overdue = await rows.due(session, now=before, limit=ENGINE_SWEEP_LIMIT)
        deferred = 0
        for delivery_id in overdue:
            if await self._defer(delivery_id):
                deferred += 1
                logger.warning("webhook %s was due with no task to carry it: deferred again", delivery_id)
        return deferred

    def _attempt_done(self, task: asyncio.Task[None]) -> None:
        self._attempts.discard(task)
        if self._wake is not None:
            self._wake.set()  # a slot is free: due work may wait for it

    async def _attempt(self, delivery: WebhookDelivery, token: str) -> None:
        body = (delivery.payload or "").encode()
        outcome = await self._send(delivery, body)
        now = datetime.now(UTC)
        values: dict[str, Any] = {"last_status_code": outcome.status_code, "last_error": outcome.error}
        if outcome.delivered:
            values.update(status=rows.DELIVERED, finished_at=now, next_attempt_at=None)
        else:
            when = next_attempt(
                delivery.attempts,
                created_at=delivery.fired_at or delivery.created_at,
                now=now,
                base=self.settings.webhook_retry_base_seconds,
                cap=self.settings.webhook_retry_max_delay_seconds,
                retry_for=self.settings.webhook_retry_for_seconds,
            )
            if when is None:
                values.update(status=rows.FAILED, finished_at=now, next_attempt_at=None)
            else:
                values.update(next_attempt_at=when)
        try:
            async with self.sessions.begin() as session:
                recorded = await rows.record(session, delivery_id=delivery.id, token=token, values=values)
        except Exception as exc:  # the lease ends and the attempt is made again
            logger.warning("webhook %s: outcome not recorded (%s)", delivery.id, type(exc).__name__)
            return
        if recorded and self._engine is not None and values.get("next_attempt_at") is not None:
            await self._defer(delivery.id, values["next_attempt_at"])
        logger.info(
            "webhook %s attempt %d to %s: %s",
            delivery.id,
            delivery.attempts,
            delivery.principal,
            "delivered" if outcome.delivered else outcome.error,
        )

    async def _send(self, delivery: WebhookDelivery, body: bytes) -> sender.Outcome:
        now = datetime.now(UTC)
        async with self.sessions.begin() as session:
            row = await rows.get_or_create_secret(
                session, principal=delivery.principal, candidate=signing.new_secret(), now=now
            )
        keys = [row.secret]
        if row.previous and row.previous_until is not None and row.previous_until > now:
            keys.append(row.previous)
        headers = signing.headers(keys, delivery.id, int(now.timestamp()), body)
        return await sender.post(delivery.url, body, headers, self.policy)

    async def _reconcile(self) -> None:
        """Fire the events of subjects that finished while nobody fired them (a crash)."""
        if self._source is None:
            return
        before = datetime.now(UTC) - timedelta(seconds=RECONCILE_SECONDS)
        async with self.sessions() as session:
            waiting = await rows.awaiting(session, before=before, limit=100)
        for _delivery_id, subject in waiting:
            try:
                event = await self._source(subject)
            except LookupError:
                continue  # gone: purged after the retention
            if event is not None:
                await self.fire(subject, event)

    async def _purge(self) -> None:
        now = datetime.now(UTC)
        keep = timedelta(seconds=self.settings.webhook_retention_seconds)
        async with self.sessions.begin() as session:
            purged = await rows.purge(session, finished_before=now - keep, awaiting_before=now - keep)
        if purged:
            logger.info("purged %d old webhook deliveries", purged)


def _secret_view(row: WebhookSecret, now: datetime) -> SecretView:
    previous = (
        row.previous_until if row.previous and row.previous_until and row.previous_until > now else None
    )
    return SecretView(secret=row.secret, created_at=row.created_at, previous_valid_until=previous)
