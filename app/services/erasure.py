"""Account erasure: a user and everything they uploaded (images, analyses, jobs) are deleted;
their request history is kept without the personal link."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.errors import Unauthorized
from app.db import accounts
from app.services.contour_jobs import ContourJobService
from app.services.history import HistoryService
from app.services.images import ImageService
from app.services.principals import Principal, UserDirectory

logger = logging.getLogger("app.accounts")


class AccountEraser:
    """Deletes an account and its data, in an order that a crash can resume: the account
    goes last, so a retry (same token) finishes the job."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        images: ImageService,
        jobs: ContourJobService,
        history: HistoryService,
        users: UserDirectory,
    ) -> None:
        self.sessions = sessions
        self.images = images
        self.jobs = jobs
        self.history = history
        self.users = users

    async def erase(self, principal: Principal) -> None:
        if principal.user_id is None:
            raise Unauthorized("Only an account can be deleted (log in first)")
        images = await self.images.delete_owned(principal.id)
        jobs = await self.jobs.queue.erase_owner(principal.id)
        await self.history.unlink(principal.id)
        async with self.sessions.begin() as session:
            await accounts.delete_user(session, user_id=principal.user_id)
        self.users.forget(principal.user_id)
        logger.info("erased user %s: %d image(s), %d job(s)", principal.user_id, images, jobs)
