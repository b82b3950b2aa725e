"""Security primitives (pure functions): API-key matching, password hashing, JWTs, the signing key.

- API keys are compared as SHA-256 digests in constant time, over every configured key.
- Passwords are hashed with argon2id at OWASP's parameters (19 MiB, 2 passes, 1 lane);
  bcrypt hashes (seed 000's `ADMIN_PW_HASH`) still verify and are upgraded on login.
- JWTs are HS256 only (an allowlist: `alg: none` and every other algorithm are refused),
  with `exp`, `iat`, `sub`, `jti`, `iss` and `aud` required and checked, and a `use` claim
  that keeps a refresh token from ever serving as an access token.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher

from app.core.errors import DatabaseUnavailable, Unauthorized

logger = logging.getLogger("app.security")

ANONYMOUS = "anonymous"
JWT_ALGORITHM = "HS256"
TokenUse = Literal["access", "refresh"]

_PASSWORDS = PasswordHash((Argon2Hasher(time_cost=2, memory_cost=19456, parallelism=1), BcryptHasher()))
# Verified when a username is unknown, so that a miss costs what a hit costs (no enumeration).
_DUMMY_HASH = _PASSWORDS.hash(secrets.token_urlsafe(16))


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


def match_api_key(candidate: str | None, keys: Sequence[str]) -> str | None:
    """The principal for `candidate` if it is one of `keys`, else None.

    Comparing fixed-length digests with `hmac.compare_digest`, over every key, keeps the
    time independent of where a guess first differs and of which key matched.
    """
    if candidate is None:
        return None
    probe = _digest(candidate)
    matched: str | None = None
    for key in keys:
        digest = _digest(key)
        if hmac.compare_digest(probe, digest):
            matched = "key:" + digest.hex()[:16]
    return matched


def secrets_equal(candidate: str, expected: str) -> bool:
    """Constant-time comparison of two secrets of any length."""
    return hmac.compare_digest(_digest(candidate), _digest(expected))


def hash_password(password: str) -> str:
    """An argon2id hash of `password` (CPU-bound: call from a worker thread)."""
    return _PASSWORDS.hash(password)


def verify_password(password: str, password_hash: str | None) -> tuple[bool, str | None]:
    """(matches, new hash if the stored one should be upgraded). A missing hash verifies a
    dummy, so that the answer takes as long as for a real account (CPU-bound: worker thread)."""
    if password_hash is None:
        _PASSWORDS.verify(password, _DUMMY_HASH)
        return False, None
    try:
        return _PASSWORDS.verify_and_update(password, password_hash)
    except Exception:  # an unknown or malformed hash never verifies
        logger.warning("a stored password hash could not be read")
        return False, None


@dataclass(frozen=True)
class TokenClaims:
    """The checked claims of a JWT."""

    subject: str
    jti: str
    use: TokenUse
    issued_at: datetime
    expires_at: datetime
    family: str | None = None


@dataclass
class JwtConfig:
    """How tokens are signed and checked. `secret` is None until it is loaded from the
    database (SECRET_KEY unset): until then signing or checking a token is a 503."""

    secret: bytes | None
    issuer: str
    audience: str

    @property
    def key(self) -> bytes:
        """The signing key; DatabaseUnavailable while it is not loaded yet."""
        if self.secret is None:
            raise DatabaseUnavailable("The signing key is kept in the database, which is not reachable yet")
        return self.secret


def issue_token(
    config: JwtConfig, *, subject: str, use: TokenUse, lifetime: timedelta, family: str | None = None
) -> tuple[str, TokenClaims]:
    """A signed token and its claims."""
    now = datetime.now(UTC)
    claims = TokenClaims(
        subject=subject,
        jti=uuid.uuid4().hex,
        use=use,
        issued_at=now,
        expires_at=(now + lifetime).replace(microsecond=0),
        family=family,
    )
    payload: dict[str, object] = {
        "sub": subject,
        "jti": claims.jti,
        "use": use,
        "iat": now.timestamp(),  # a NumericDate may carry a fraction: ordering within a second
        "exp": int(claims.expires_at.timestamp()),
        "iss": config.issuer,
        "aud": config.audience,
    }
    if family is not None:
        payload["fam"] = family
    return jwt.encode(payload, config.key, algorithm=JWT_ALGORITHM), claims


def decode_token(config: JwtConfig, token: str, use: TokenUse) -> TokenClaims:
    """The claims of a valid token of the given use; Unauthorized for anything else."""
    try:
        payload = jwt.decode(
            token,
            config.key,
            algorithms=[JWT_ALGORITHM],
            audience=config.audience,
            issuer=config.issuer,
            options={"require": ["exp", "iat", "sub", "jti", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("The token has expired", headers=_BEARER) from None
    except jwt.PyJWTError:
        raise Unauthorized("The token is invalid", headers=_BEARER) from None
    if payload.get("use") != use:
        raise Unauthorized(f"This is not an {use} token", headers=_BEARER)
    if not isinstance(payload["sub"], str) or not isinstance(payload["jti"], str):
        raise Unauthorized("The token is invalid", headers=_BEARER)
    family = payload.get("fam")
    try:  # PyJWT checked they are numbers; a datetime still needs them within years 1-9999
        issued_at = datetime.fromtimestamp(float(payload["iat"]), UTC)
        expires_at = datetime.fromtimestamp(int(payload["exp"]), UTC)
    except (OverflowError, ValueError, OSError):
        raise Unauthorized("The token is invalid", headers=_BEARER) from None
    return TokenClaims(
        subject=payload["sub"],
        jti=payload["jti"],
        use=use,
        issued_at=issued_at,
        expires_at=expires_at,
        family=family if isinstance(family, str) else None,
    )


_BEARER = {"WWW-Authenticate": "Bearer"}


SECRET_NAME = "jwt_secret_key"


def new_secret(data_dir: Path) -> str:
    """A candidate for the shared signing key: an earlier version's `data_dir/secret_key`
    (adopted, so that tokens it issued stay valid) or a fresh random one (64 bytes)."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        adopted = (data_dir / "secret_key").read_text().strip()
        if len(adopted.encode()) >= 32:
            return adopted
    return secrets.token_urlsafe(64)
