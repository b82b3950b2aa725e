"""AccountService on a real SQLite database: expired tokens are purged while tokens are issued."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import func, select

from app.db import accounts
from app.db.models import RefreshToken, RevokedAccessToken
from app.main import create_app
from app.services.accounts.service import AccountService
from tests.conftest import shared_registry

PASSWORD = "correct horse battery"
ROW_IDS = itertools.count()


async def count(service: AccountService, model: type[RefreshToken] | type[RevokedAccessToken]) -> int:
    async with service.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def add_expired_tokens(service: AccountService, user_id: int) -> None:
    """One expired refresh token and one expired access-token revocation of `user_id`."""
    past = datetime.now(UTC) - timedelta(days=1)
    n = next(ROW_IDS)
    async with service.sessions.begin() as session:
        await accounts.add_refresh_token(
            session, jti=f"old-{n}", family_id="old", user_id=user_id, issued_at=past, expires_at=past
        )
        await accounts.revoke_access_token(session, jti=f"gone-{n}", user_id=user_id, expires_at=past)


async def test_issuing_tokens_purges_expired_ones_at_most_once_per_interval(make_settings) -> None:
    application = create_app(make_settings(token_purge_interval_seconds=3600), registry=shared_registry())
    async with application.router.lifespan_context(application):
        service: AccountService = application.state.services.accounts
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as api:
            credentials = {"username": "alice", "password": PASSWORD}
            user = (await api.post("/v1/register", json=credentials)).json()
            await add_expired_tokens(service, user["id"])

            assert (await api.post("/v1/login", json=credentials)).status_code == 200
            async with service.sessions() as session:
                families = (await session.execute(select(RefreshToken.family_id))).scalars().all()
            assert families and "old" not in families  # the login's own token stays
            assert await count(service, RevokedAccessToken) == 0

            # within the interval, the next login leaves the next expired rows for later
            await add_expired_tokens(service, user["id"])
            assert (await api.post("/v1/login", json=credentials)).status_code == 200
            assert await count(service, RevokedAccessToken) == 1
