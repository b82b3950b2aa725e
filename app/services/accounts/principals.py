"""Who is calling: anonymous, an API key, a user or an admin; resolved without a database
round trip per request.

A bearer token is verified once (signature, claims) and its claims are kept in a small
cache until the token expires; the user it names is looked up through `UserDirectory`,
which keeps each user's view (admin flag, existence, logout instant, revoked tokens) for
`USER_CACHE_SECONDS`: a deletion or logout in this worker applies at once, in the others
within that many seconds. The Principal a token resolved to is kept beside its claims, tied
to the very view it was checked against: it serves again only while that view is still the
directory's current one (not expired, not forgotten after a logout, revocation or erasure)
and the token has not expired, so a repeat caller costs two dictionary lookups.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.errors import Unauthorized
from app.core.security import ANONYMOUS, JwtConfig, TokenClaims, decode_token, match_api_key, secrets_equal
from app.db import accounts
from app.services.accounts.settings import AccessSettings

PrincipalKind = Literal["anonymous", "api_key", "user", "admin"]
_BEARER = {"WWW-Authenticate": "Bearer"}
_TOKENS_KEPT = 10_000  # verified tokens kept per process (claims, resolved principals)


@dataclass(frozen=True)
class Principal:
    """A caller. `id` owns what the caller creates ("anonymous", "key:…", "user:42")."""

    id: str
    kind: PrincipalKind
    user_id: int | None = None
    token: TokenClaims | None = None

    @property
    def is_admin(self) -> bool:
        return self.kind == "admin"

    @property
    def metered(self) -> bool:
        """Whether model-backed analyses cost this caller credits (users; not admins or keys)."""
        return self.kind == "user"

    def can_see(self, owner: str) -> bool:
        """Whether this caller may see what `owner` created (admins see everything)."""
        return self.is_admin or owner == self.id


ANONYMOUS_PRINCIPAL = Principal(id=ANONYMOUS, kind="anonymous")


def user_principal_id(user_id: int) -> str:
    return f"user:{user_id}"


@dataclass(frozen=True)
class UserView:
    """What request handling needs to know about a user, cached."""

    user_id: int
    is_admin: bool
    tokens_valid_after: datetime | None
    created_at: datetime
    revoked: frozenset[str]
    loaded_at: float


class UserDirectory:
    """Cached views of users (None: no such user), refreshed after `ttl` seconds."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], ttl: float, entries: int = 50_000) -> None:
        self.sessions = sessions
        self.ttl = ttl
        self.entries = entries
        self._views: OrderedDict[int, UserView | None] = OrderedDict()
        self._loaded: dict[int, float] = {}

    def current(self, user_id: int, now: float) -> UserView | None:
        """The cached view of `user_id` if it is still fresh at `now` (monotonic), else None;
        never loads."""
        view = self._views.get(user_id)
        if view is not None and now - view.loaded_at < self.ttl:
            return view
        return None

    async def get(self, user_id: int) -> UserView | None:
        now = time.monotonic()
        if user_id in self._views and now - self._loaded[user_id] < self.ttl:
            return self._views[user_id]
        view = await self._load(user_id, now)
        self._views[user_id] = view
        self._loaded[user_id] = now
        self._views.move_to_end(user_id)
        while len(self._views) > self.entries:
            old, _ = self._views.popitem(last=False)
            self._loaded.pop(old, None)
        return view

    def forget(self, user_id: int) -> None:
        """Drop a cached view (after a change made by this worker)."""
        self._views.pop(user_id, None)
        self._loaded.pop(user_id, None)

    async def _load(self, user_id: int, now: float) -> UserView | None:
        async with self.sessions() as session:
            user = await accounts.get_user(session, user_id=user_id)
            if user is None:
                return None
            revoked = await accounts.revoked_jtis(session, user_id=user_id, now=datetime.now(UTC))
            return UserView(user.id, user.is_admin, user.tokens_valid_after, user.created_at, revoked, now)


class PrincipalResolver:
    """Turns request credentials into a Principal (Unauthorized for bad ones)."""

    def __init__(self, settings: AccessSettings, jwt_config: JwtConfig, users: UserDirectory) -> None:
        self.settings = settings
        self.jwt = jwt_config
        self.users = users
        self._claims: OrderedDict[str, TokenClaims] = OrderedDict()
        # token -> (its Principal, the view it was checked against, its expiry as a Unix time)
        self._resolved: OrderedDict[str, tuple[Principal, UserView, float]] = OrderedDict()

    async def resolve(self, *, authorization: str | None, api_key: str | None) -> Principal:
        """The caller: a bearer token wins over an API key; neither is anonymous if allowed."""
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("Send `Authorization: Bearer <token>`", headers=_BEARER)
            return await self.from_token(token.strip())
        if self.settings.api_keys and api_key is not None:
            key_principal = match_api_key(api_key, self.settings.api_keys)
            if key_principal is None:
                raise Unauthorized("The X-API-KEY is not valid", headers={"WWW-Authenticate": "ApiKey"})
            return Principal(id=key_principal, kind="api_key")
        if self.settings.anonymous_allowed:
            return ANONYMOUS_PRINCIPAL
        raise Unauthorized(
            "Credentials are required: an X-API-KEY header or a bearer token",
            headers={"WWW-Authenticate": "Bearer, ApiKey"},
        )

    def is_admin_token(self, token: str) -> bool:
        """Whether `token` is seed 003's static ADMIN_TOKEN (False when it is not set)."""
        configured = self.settings.admin_token
        return configured is not None and secrets_equal(token, configured.get_secret_value())

    async def from_token(self, token: str) -> Principal:
        """The user an access token names, if the token and the user are both still valid."""
        resolved = self._resolved.get(token)
        if resolved is not None:
            principal, seen, expires = resolved
            if time.time() < expires and self.users.current(seen.user_id, time.monotonic()) is seen:
                return principal
            del self._resolved[token]
        claims = self._verified(token)
        # User ids are positive int64 (SQLite INTEGER, PostgreSQL BIGINT): at most 18 ASCII digits.
        if not (claims.subject.isascii() and claims.subject.isdigit() and len(claims.subject) <= 18):
            raise Unauthorized("The token is invalid", headers=_BEARER)
        view = await self.users.get(int(claims.subject))
        if view is None:
            raise Unauthorized("The token's account no longer exists", headers=_BEARER)
        if (
            claims.jti in view.revoked
            or (view.tokens_valid_after is not None and claims.issued_at < view.tokens_valid_after)
            or claims.issued_at < view.created_at  # issued to an earlier account of this id
        ):
            raise Unauthorized("The token has been revoked", headers=_BEARER)
        kind: PrincipalKind = "admin" if view.is_admin else "user"
        user_id = view.user_id
        principal = Principal(id=user_principal_id(user_id), kind=kind, user_id=user_id, token=claims)
        self._resolved[token] = (principal, view, claims.expires_at.timestamp())
        while len(self._resolved) > _TOKENS_KEPT:
            self._resolved.popitem(last=False)
        return principal

    def _verified(self, token: str) -> TokenClaims:
        claims = self._claims.get(token)
        if claims is None:
            claims = decode_token(self.jwt, token, "access")
            self._claims[token] = claims
            while len(self._claims) > _TOKENS_KEPT:
                self._claims.popitem(last=False)
        elif claims.expires_at <= datetime.now(UTC):
            self._claims.pop(token, None)
            raise Unauthorized("The token has expired", headers=_BEARER)
        return claims
