"""Accounts: registration, login, token rotation, logout, profiles, admins from the environment.

Passwords are hashed on a bounded pool of their own (`app.services.accounts.password_hasher`; argon2id
costs ~40 ms of CPU). Failed logins are limited by `app.services.accounts.login_throttle` (a device
that signed in before has its own allowance: its signed device cookie); a successful login
issues a new device cookie. Login failures say the same thing, and take as long, whether the
username exists or not. Refresh tokens rotate: each use marks the token used and issues the
next of its family; a token used twice (it leaked) revokes its whole family and every access
token issued before. Expired refresh tokens and revocations are purged while tokens are issued,
at most once per `TOKEN_PURGE_INTERVAL_SECONDS` in each process. Username and password rules:
`app.services.accounts.usernames`.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core import metrics
from app.core.device_cookies import Device, DeviceCookies
from app.core.errors import Forbidden, Unauthorized, UsernameTaken
from app.core.security import JwtConfig, decode_token, issue_token
from app.db import accounts
from app.db.models import User
from app.services.accounts.login_attempts import attempt_store
from app.services.accounts.login_throttle import LoginLimits, LoginThrottle
from app.services.accounts.password_hasher import PasswordHasher
from app.services.accounts.principals import Principal, UserDirectory
from app.services.accounts.settings import AccountSettings
from app.services.accounts.usernames import (
    check_full_name,
    check_password,
    check_username,
    storable_key,
    username_key,
)

logger = logging.getLogger("app.accounts")

BAD_LOGIN = "Incorrect username or password"


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_in: int
    token_type: str = "bearer"


@dataclass(frozen=True)
class SignIn:
    """A successful login: the tokens, and the device cookie to set (valid `max_age` seconds)."""

    tokens: TokenPair
    device_cookie: str
    max_age: int


# The throttle's key for guesses of the admin password (no username can take this form).
ADMIN_PASSWORD_KEY = "\x00admin-password"


class AccountService:
    """Users and their tokens."""

    def __init__(
        self,
        settings: AccountSettings,
        sessions: async_sessionmaker[AsyncSession],
        jwt_config: JwtConfig,
        users: UserDirectory,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.jwt = jwt_config
        self.users = users
        self.devices = DeviceCookies(lambda: jwt_config.key, settings.device_cookie.days * 86400)
        limits = LoginLimits(
            free=settings.login_failures_before_delay,
            window=settings.login_failure_window_seconds,
            max_delay=settings.login_max_delay_seconds,
            untrusted=settings.login_untrusted_limit,
            device=settings.login_device_limit,
            address=settings.login_address_limit,
        )
        self.throttle = LoginThrottle(attempt_store(settings.redis), limits)
        self.hasher = PasswordHasher(
            settings.password_hash_concurrency,
            settings.password_hash_queue_limit,
            settings.password_hash_max_wait_seconds,
            settings.password_hash_nice,
        )
        self._purged_at = float("-inf")

    async def stop(self) -> None:
        """Close the login throttle's store (its Redis connections)."""
        await self.throttle.store.close()

    def close(self) -> None:
        """Stop the password-hashing threads (after running hashes finish)."""
        self.hasher.shutdown()

    async def ensure_env_admin(self) -> None:
        """Seed 000: the ADMIN_USERNAME account exists, is an admin, and has ADMIN_PW_HASH's
        password (reset whenever that hash changes)."""
        name, secret = self.settings.admin_username, self.settings.admin_pw_hash
        if not name or secret is None:
            return
        env_hash = secret.get_secret_value()
        key = username_key(check_username(name))
        try:
            async with self.sessions.begin() as session:
                user = await accounts.find_user(session, username_key=key)
                if user is None:
                    await accounts.add_user(
                        session,
                        username=name,
                        username_key=key,
                        password_hash=env_hash,
                        full_name=None,
                        is_admin=True,
                        credits=self.settings.initial_credits,
                        now=datetime.now(UTC),
                        external_hash=env_hash,
                    )
                else:
                    user.is_admin = True
                    if user.external_hash != env_hash:
                        user.password_hash = user.external_hash = env_hash
        except IntegrityError:
            pass  # another worker created it at the same moment

    async def register(
        self,
        *,
        username: str,
        password: str,
        full_name: str | None = None,
        is_admin: bool = False,
        requested_by: Principal | None = None,
    ) -> User:
        """A new account (409 if the username is taken). `is_admin` needs an admin caller, or
        ADMIN_BOOTSTRAP while no admin exists (the first admin)."""
        username = check_username(username)
        check_password(password, self.settings)
        full_name = check_full_name(full_name)
        password_hash = await self.hasher.hash(password)
        async with self.sessions.begin() as session:
            if is_admin and not (requested_by is not None and requested_by.is_admin):
                if not self.settings.admin_bootstrap_enabled or await accounts.admin_exists(session):
                    raise Forbidden(
                        "Only an admin can create an admin account"
                        + ("" if self.settings.admin_bootstrap_enabled else " (ADMIN_BOOTSTRAP is off)")
                    )
            try:
                user = await accounts.add_user(
                    session,
                    username=username,
                    username_key=username_key(username),
                    password_hash=password_hash,
                    full_name=full_name,
                    is_admin=is_admin,
                    credits=self.settings.initial_credits,
                    now=datetime.now(UTC),
                )
            except IntegrityError:
                raise UsernameTaken() from None
        logger.info("registered user %s%s", user.id, " (admin)" if is_admin else "")
        return user

    def device(self, cookie: str | None, username: str) -> Device | None:
        """The device of a valid device cookie for `username` (it signed in as them), else None."""
        return self.devices.read(cookie, username_key(username))

    async def login(
        self, *, username: str, password: str, address: str | None, device: Device | None = None
    ) -> SignIn:
        """Tokens and a new device cookie for a correct username and password; Unauthorized
        (the same for an unknown user); TooManyRequests while locked out (the attempt is
        reserved before the password is checked, so no more passwords are checked than the
        limit); ServiceUnavailable when password hashing is saturated."""
        key = username_key(username)
        self.hasher.admit()  # a flood is refused before any bookkeeping or lookup
        attempt = await self.throttle.begin(key, address, device)
        try:
            user = None
            if storable_key(key):  # else no such user: the same answer, after the same hashing
                async with self.sessions() as session:
                    user = await accounts.find_user(session, username_key=key)
            ok, upgraded = await self.hasher.verify(password, user.password_hash if user else None)
        except BaseException:  # no answer about the password: the attempt does not count
            await self.throttle.release(attempt)
            raise
        if user is None or not ok:
            metrics.LOGIN_FAILURES.inc()
            raise Unauthorized(BAD_LOGIN, headers={"WWW-Authenticate": "Bearer"})
        await self.throttle.succeeded(attempt)
        if upgraded is not None:
            async with self.sessions.begin() as session:
                await accounts.set_password_hash(session, user_id=user.id, password_hash=upgraded)
        tokens = await self._issue(user.id, family=uuid.uuid4().hex)
        return SignIn(tokens, self.devices.issue(key), self.devices.max_age_seconds)

    async def admin_password_matches(self, password: str, *, address: str | None) -> bool:
        """Whether `password` is seed 000's admin password (ADMIN_PW_HASH; False when unset).
        Checked like a login: on the bounded hashing pool, each guess reserved under the login
        throttle (its own key and the caller's address) before the hash is compared."""
        configured = self.settings.admin_pw_hash
        if configured is None:
            return False
        self.hasher.admit()
        attempt = await self.throttle.begin(ADMIN_PASSWORD_KEY, address, None)
        try:
            ok, _ = await self.hasher.verify(password, configured.get_secret_value())
        except BaseException:
            await self.throttle.release(attempt)
            raise
        if ok:
            await self.throttle.succeeded(attempt)
        else:
            metrics.LOGIN_FAILURES.inc()
        return ok

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Rotate a refresh token. Replaying a used one revokes its family (and the user's
        access tokens issued so far): whoever holds the other copy is locked out."""
        claims = decode_token(self.jwt, refresh_token, "refresh")
        now = datetime.now(UTC)
        async with self.sessions.begin() as session:
            used = await accounts.use_refresh_token(session, jti=claims.jti, now=now)
            if used is not None:
                # The successor is stored in the same transaction: a concurrent replay that
                # revokes the family after this commit sees (and revokes) it too.
                pair, successor = self._new_pair(used.user_id, family=used.family_id)
                await accounts.add_refresh_token(session, **successor)
                return pair
            known = await accounts.get_refresh_token(session, jti=claims.jti)
            if known is not None:
                await accounts.revoke_family(session, family_id=known.family_id)
                user = await accounts.get_user(session, user_id=known.user_id)
                if user is not None:
                    user.tokens_valid_after = now
                logger.warning("refresh token reuse for user %s: family revoked", known.user_id)
        if known is not None:
            self.users.forget(known.user_id)
        raise Unauthorized(
            "The refresh token has been used or revoked", headers={"WWW-Authenticate": "Bearer"}
        )

    async def logout(self, principal: Principal, refresh_token: str | None = None) -> None:
        """Revoke the caller's access token and, if given, the refresh token's family."""
        if principal.user_id is None or principal.token is None:
            raise Unauthorized(
                "Log out with the bearer token to revoke", headers={"WWW-Authenticate": "Bearer"}
            )
        family = None
        if refresh_token:
            claims = decode_token(self.jwt, refresh_token, "refresh")
            if claims.subject == str(principal.user_id):
                family = claims.family
        async with self.sessions.begin() as session:
            await accounts.revoke_access_token(
                session,
                jti=principal.token.jti,
                user_id=principal.user_id,
                expires_at=principal.token.expires_at,
            )
            if family is not None:
                await accounts.revoke_family(session, family_id=family)
        self.users.forget(principal.user_id)

    async def profile(self, user_id: int) -> User:
        async with self.sessions() as session:
            user = await accounts.get_user(session, user_id=user_id)
        if user is None:
            raise Unauthorized("The token's account no longer exists")
        return user

    async def find(self, username: str) -> User | None:
        key = username_key(username)
        if not storable_key(key):
            return None
        async with self.sessions() as session:
            return await accounts.find_user(session, username_key=key)

    async def _issue(self, user_id: int, family: str) -> TokenPair:
        pair, refresh_row = self._new_pair(user_id, family)
        async with self.sessions.begin() as session:
            await accounts.add_refresh_token(session, **refresh_row)
        await self._purge_expired_tokens()
        return pair

    async def _purge_expired_tokens(self) -> None:
        """Delete expired refresh tokens and access-token revocations, when the last purge in
        this process is older than the interval. Replicas may purge the same rows at once: a
        delete of what is gone is a no-op. A failed purge is logged, never the caller's error."""
        started = time.monotonic()
        if started - self._purged_at < self.settings.token_purge_interval_seconds:
            return
        self._purged_at = started
        try:
            async with self.sessions.begin() as session:
                await accounts.purge_expired_tokens(session, now=datetime.now(UTC))
        except Exception:
            logger.exception("purging expired tokens failed; the next interval tries again")

    def _new_pair(self, user_id: int, family: str) -> tuple[TokenPair, dict[str, Any]]:
        """A new access and refresh token, and the refresh token's row to store."""
        access_life = timedelta(minutes=self.settings.access_token_minutes)
        refresh_life = timedelta(days=self.settings.refresh_token_days)
        access, _ = issue_token(self.jwt, subject=str(user_id), use="access", lifetime=access_life)
        refresh, claims = issue_token(
            self.jwt, subject=str(user_id), use="refresh", lifetime=refresh_life, family=family
        )
        row = {
            "jti": claims.jti,
            "family_id": family,
            "user_id": user_id,
            "issued_at": claims.issued_at,
            "expires_at": claims.expires_at,
        }
        pair = TokenPair(
            access_token=access,
            refresh_token=refresh,
            expires_in=int(access_life.total_seconds()),
            refresh_expires_in=int(refresh_life.total_seconds()),
        )
        return pair, row
