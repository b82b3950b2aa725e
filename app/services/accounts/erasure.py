"""Account erasure: a user and everything they uploaded (images, analyses, jobs with their
stored inputs and outputs, in the data dir or the bucket, idempotency records) are deleted;
their request history keeps only what is not personal (route, status, times, sizes)."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.errors import Unauthorized
from app.db import accounts
from app.services.accounts.principals import Principal, UserDirectory
from app.services.history import HistoryService
from app.services.images.catalog import ImageService
from app.services.images.idempotency import IdempotencyStore
from app.services.jobs.contours import ContourJobService

logger = logging.getLogger("app.accounts")


class AccountEraser:
    """Deletes an account and its data, in an order that a crash can resume: the account
    goes last, so a retry (same token) finishes the job. Each step costs what the user's own
    data costs, not what the whole store holds (but for the job records, see `JobStore`)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        images: ImageService,
        jobs: ContourJobService,
        history: HistoryService,
        users: UserDirectory,
        idempotency: IdempotencyStore,
    ) -> None:
        self.sessions = sessions
        self.images = images
        self.jobs = jobs
        self.history = history
        self.users = users
        self.idempotency = idempotency

    async def erase(self, principal: Principal) -> None:
        """Erase `principal`'s account and data (Unauthorized unless it is a user)."""
        if principal.user_id is None:
            raise Unauthorized("Only an account can be deleted (log in first)")
        images = await self.images.delete_owned(principal.id)
        jobs = await self.jobs.erase_owner(principal.id)
        if self.jobs.webhooks is not None:  # its secret and deliveries (callback URLs)
            await self.jobs.webhooks.erase(principal.id)
        keys = await self.idempotency.erase_scope(principal.id, images)
        rows = await self.history.erase(principal.id)
        async with self.sessions.begin() as session:
            await accounts.delete_user(session, user_id=principal.user_id)
        self.users.forget(principal.user_id)
        logger.info(
            "erased user %s: %d image(s), %d job(s), %d idempotency key(s), %d history row(s) scrubbed",
            principal.user_id,
            len(images),
            jobs,
            keys,
            rows,
        )
