"""Users, refresh tokens and revoked access tokens (keyword-only repository functions)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import CreditEntry, RefreshToken, RevokedAccessToken, User


async def get_user(session: AsyncSession, *, user_id: int) -> User | None:
    return await session.get(User, user_id)


async def find_user(session: AsyncSession, *, username_key: str) -> User | None:
    return (await session.execute(select(User).where(User.username_key == username_key))).scalar_one_or_none()


async def admin_exists(session: AsyncSession) -> bool:
    return bool((await session.execute(select(exists().where(User.is_admin.is_(True))))).scalar())


async def add_user(
    session: AsyncSession,
    *,
    username: str,
    username_key: str,
    password_hash: str,
    full_name: str | None,
    is_admin: bool,
    credits: int,
    now: datetime,
    external_hash: str | None = None,
) -> User:
    """A new user with `credits`, recorded in the ledger as its first entry (flushes; the
    caller commits, and an existing username raises IntegrityError on flush)."""
    user = User(
        username=username,
        username_key=username_key,
        password_hash=password_hash,
        full_name=full_name,
        is_admin=is_admin,
        credits=credits,
        external_hash=external_hash,
        created_at=now,
    )
    session.add(user)
    await session.flush()
    if credits:
        session.add(CreditEntry(user_id=user.id, delta=credits, reason="initial", created_at=now))
    return user


async def set_password_hash(session: AsyncSession, *, user_id: int, password_hash: str) -> None:
    await session.execute(update(User).where(User.id == user_id).values(password_hash=password_hash))


async def delete_user(session: AsyncSession, *, user_id: int) -> None:
    """Remove a user; tokens, holds and ledger entries go with it (ON DELETE CASCADE)."""
    for table in (RefreshToken, RevokedAccessToken, CreditEntry):
        await session.execute(delete(table).where(table.user_id == user_id))
    await session.execute(delete(User).where(User.id == user_id))


async def add_refresh_token(
    session: AsyncSession,
    *,
    jti: str,
    family_id: str,
    user_id: int,
    issued_at: datetime,
    expires_at: datetime,
) -> None:
    session.add(
        RefreshToken(
            jti=jti, family_id=family_id, user_id=user_id, issued_at=issued_at, expires_at=expires_at
        )
    )


async def use_refresh_token(session: AsyncSession, *, jti: str, now: datetime) -> RefreshToken | None:
    """Mark a live, unused refresh token used; None if it is unknown, revoked or already used
    (the caller then revokes its family: a replayed token means it leaked)."""
    result = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.jti == jti, RefreshToken.used_at.is_(None), RefreshToken.revoked.is_(False))
        .values(used_at=now)
        .returning(RefreshToken.user_id)
    )
    if result.first() is None:
        return None
    return await session.get(RefreshToken, jti)


async def get_refresh_token(session: AsyncSession, *, jti: str) -> RefreshToken | None:
    return await session.get(RefreshToken, jti)


async def revoke_family(session: AsyncSession, *, family_id: str) -> None:
    await session.execute(
        update(RefreshToken).where(RefreshToken.family_id == family_id).values(revoked=True)
    )


async def revoke_access_token(session: AsyncSession, *, jti: str, user_id: int, expires_at: datetime) -> None:
    if await session.get(RevokedAccessToken, jti) is None:
        session.add(RevokedAccessToken(jti=jti, user_id=user_id, expires_at=expires_at))


async def revoked_jtis(session: AsyncSession, *, user_id: int, now: datetime) -> frozenset[str]:
    rows = await session.execute(
        select(RevokedAccessToken.jti).where(
            RevokedAccessToken.user_id == user_id, RevokedAccessToken.expires_at > now
        )
    )
    return frozenset(rows.scalars())


async def purge_expired_tokens(session: AsyncSession, *, now: datetime) -> None:
    await session.execute(delete(RevokedAccessToken).where(RevokedAccessToken.expires_at <= now))
    await session.execute(delete(RefreshToken).where(RefreshToken.expires_at <= now))
