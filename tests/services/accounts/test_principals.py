"""app.services.accounts.principals: who a request's credentials name (anonymous, API key, user,
admin), token revocation checks, and the cached user directory, over a real database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.core.errors import Unauthorized
from app.core.security import JwtConfig, issue_token, match_api_key
from app.db import accounts
from app.services.accounts.principals import (
    ANONYMOUS_PRINCIPAL,
    Principal,
    PrincipalResolver,
    UserDirectory,
    user_principal_id,
)
from app.services.accounts.settings import AccessSettings
from tests.db.users import add_user

Sessions = async_sessionmaker[AsyncSession]
JWT = JwtConfig(secret=b"k" * 64, issuer="test-issuer", audience="test-audience")


def access(subject: str, **kwargs: object) -> str:
    return issue_token(JWT, subject=subject, use="access", lifetime=timedelta(minutes=5), **kwargs)[0]  # type: ignore[arg-type]


@pytest.fixture
def resolver(sessions: Sessions) -> Callable[..., PrincipalResolver]:
    def _make(ttl: float = 0.0, **settings: object) -> PrincipalResolver:
        access = AccessSettings.from_settings(Settings(_env_file=None, **settings))  # type: ignore[arg-type]
        return PrincipalResolver(access, JWT, UserDirectory(sessions, ttl))

    return _make


def test_what_each_kind_of_principal_may_do() -> None:
    user = Principal(id=user_principal_id(7), kind="user", user_id=7)
    admin = Principal(id="user:1", kind="admin", user_id=1)
    key = Principal(id="key:abc", kind="api_key")
    assert user.id == "user:7"
    assert user.metered and not admin.metered and not key.metered and not ANONYMOUS_PRINCIPAL.metered
    assert admin.is_admin and not user.is_admin
    assert user.can_see("user:7") and not user.can_see("user:8") and not user.can_see("anonymous")
    assert admin.can_see("user:8") and admin.can_see("anonymous")
    assert ANONYMOUS_PRINCIPAL.can_see("anonymous") and not ANONYMOUS_PRINCIPAL.can_see("user:7")


async def test_no_credentials_is_anonymous_only_while_anonymous_access_is_on(
    resolver: Callable[..., PrincipalResolver],
) -> None:
    assert await resolver().resolve(authorization=None, api_key=None) is ANONYMOUS_PRINCIPAL
    with pytest.raises(Unauthorized) as caught:
        await resolver(api_keys=["k1"]).resolve(authorization=None, api_key=None)
    assert caught.value.headers["WWW-Authenticate"] == "Bearer, ApiKey"
    opened = resolver(api_keys=["k1"], anonymous_access=True)
    assert await opened.resolve(authorization=None, api_key=None) is ANONYMOUS_PRINCIPAL


async def test_api_keys(resolver: Callable[..., PrincipalResolver]) -> None:
    keyed = resolver(api_keys=["k1", "k2"])
    principal = await keyed.resolve(authorization=None, api_key="k2")
    assert principal.kind == "api_key" and principal.id == match_api_key("k2", ["k2"])
    with pytest.raises(Unauthorized) as caught:
        await keyed.resolve(authorization=None, api_key="k3")
    assert caught.value.headers["WWW-Authenticate"] == "ApiKey"
    # Without configured keys an X-API-KEY header is ignored, not refused.
    assert await resolver().resolve(authorization=None, api_key="anything") is ANONYMOUS_PRINCIPAL


async def test_a_bearer_token_names_its_user_or_admin_and_wins_over_a_key(
    sessions: Sessions, resolver: Callable[..., PrincipalResolver]
) -> None:
    user_id = await add_user(sessions)
    admin_id = await add_user(sessions, is_admin=True)
    keyed = resolver(api_keys=["k1"])
    user = await keyed.resolve(authorization=f"Bearer {access(str(user_id))}", api_key="k1")
    assert (user.kind, user.user_id, user.id) == ("user", user_id, f"user:{user_id}")
    assert user.token is not None and user.token.subject == str(user_id)
    admin = await keyed.resolve(authorization=f"bearer  {access(str(admin_id))} ", api_key=None)
    assert admin.kind == "admin" and admin.is_admin


@pytest.mark.parametrize("header", ["Basic dXNlcjpwdw==", "Bearer", "Bearer    ", "Token abc"])
async def test_other_authorization_schemes_are_refused(
    resolver: Callable[..., PrincipalResolver], header: str
) -> None:
    with pytest.raises(Unauthorized, match="Bearer <token>"):
        await resolver().resolve(authorization=header, api_key=None)


@pytest.mark.parametrize("subject", ["alice", "-1", "1" * 19, "١٢"])
async def test_a_subject_that_is_not_a_user_id_is_refused(
    resolver: Callable[..., PrincipalResolver], subject: str
) -> None:
    with pytest.raises(Unauthorized, match="invalid"):
        await resolver().from_token(access(subject))


async def test_a_deleted_users_token_is_refused(
    sessions: Sessions, resolver: Callable[..., PrincipalResolver]
) -> None:
    user_id = await add_user(sessions)
    token = access(str(user_id))
    r = resolver()
    assert (await r.from_token(token)).user_id == user_id
    async with sessions.begin() as session:
        await accounts.delete_user(session, user_id=user_id)
    with pytest.raises(Unauthorized, match="no longer exists"):
        await r.from_token(token)


async def test_revoked_tokens_and_tokens_before_a_logout_are_refused(
    sessions: Sessions, resolver: Callable[..., PrincipalResolver]
) -> None:
    user_id = await add_user(sessions)
    kept, revoked = access(str(user_id)), access(str(user_id))
    r = resolver()
    claims = (await r.from_token(revoked)).token
    assert claims is not None
    async with sessions.begin() as session:
        await accounts.revoke_access_token(
            session, jti=claims.jti, user_id=user_id, expires_at=claims.expires_at
        )
    with pytest.raises(Unauthorized, match="revoked"):
        await r.from_token(revoked)
    assert (await r.from_token(kept)).user_id == user_id
    async with sessions.begin() as session:
        user = await accounts.get_user(session, user_id=user_id)
        assert user is not None
        user.tokens_valid_after = datetime.now(UTC) + timedelta(seconds=1)
    with pytest.raises(Unauthorized, match="revoked"):
        await r.from_token(kept)


async def test_a_token_older_than_its_account_is_refused(
    sessions: Sessions, resolver: Callable[..., PrincipalResolver]
) -> None:
    user_id = await add_user(sessions, created_at=datetime.now(UTC) + timedelta(minutes=1))
    with pytest.raises(Unauthorized, match="revoked"):
        await resolver().from_token(access(str(user_id)))


async def test_the_directory_keeps_a_view_for_its_ttl_unless_forgotten(sessions: Sessions) -> None:
    user_id = await add_user(sessions)
    directory = UserDirectory(sessions, ttl=3600)
    before = await directory.get(user_id)
    assert before is not None and not before.is_admin
    async with sessions.begin() as session:
        user = await accounts.get_user(session, user_id=user_id)
        assert user is not None
        user.is_admin = True
    assert await directory.get(user_id) is before  # cached
    directory.forget(user_id)
    after = await directory.get(user_id)
    assert after is not None and after.is_admin
    assert await UserDirectory(sessions, ttl=0).get(user_id + 1000) is None


async def test_the_directory_holds_at_most_its_entries(sessions: Sessions) -> None:
    ids = [await add_user(sessions) for _ in range(3)]
    directory = UserDirectory(sessions, ttl=3600, entries=2)
    views = [await directory.get(i) for i in ids]
    assert await directory.get(ids[2]) is views[2]  # still cached
    assert await directory.get(ids[0]) is not views[0]  # evicted, loaded again


async def test_a_resolved_token_is_remembered_until_its_view_is_forgotten_or_it_expires(
    sessions: Sessions, resolver: Callable[..., PrincipalResolver]
) -> None:
    user_id = await add_user(sessions)
    token = access(str(user_id))
    r = resolver(ttl=3600)
    first = await r.from_token(token)
    async with sessions.begin() as session:
        user = await accounts.get_user(session, user_id=user_id)
        assert user is not None
        user.is_admin = True
    assert await r.from_token(token) is first  # remembered: no database read
    r.users.forget(user_id)  # what a logout, revocation or erasure in this process does
    again = await r.from_token(token)
    assert again is not first and again.is_admin
    async with sessions.begin() as session:
        await accounts.delete_user(session, user_id=user_id)
    r.users.forget(user_id)
    with pytest.raises(Unauthorized, match="no longer exists"):
        await r.from_token(token)


async def test_a_remembered_token_is_refused_once_it_expires(
    sessions: Sessions, resolver: Callable[..., PrincipalResolver], monkeypatch: pytest.MonkeyPatch
) -> None:
    user_id = await add_user(sessions)
    token = access(str(user_id))  # five minutes
    r = resolver(ttl=3600)
    assert (await r.from_token(token)).user_id == user_id
    later = datetime.now(UTC) + timedelta(minutes=6)
    monkeypatch.setattr("app.services.accounts.principals.time.time", lambda: later.timestamp())
    monkeypatch.setattr("app.services.accounts.principals.datetime", _FrozenDatetime(later))
    with pytest.raises(Unauthorized, match="expired"):
        await r.from_token(token)


class _FrozenDatetime:
    """`datetime` as the resolver uses it (`now`), stopped at `at`."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self, tz: object = None) -> datetime:
        return self.at
