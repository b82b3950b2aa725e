"""API-key checks (constant time) and the principal they yield."""

from __future__ import annotations

import hashlib
import hmac

from app.core.errors import Unauthorized

ANONYMOUS = "anonymous"


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


def match_api_key(candidate: str | None, keys: list[str]) -> str | None:
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


def authenticate(keys: list[str], candidate: str | None) -> str:
    """The caller's principal: anonymous when no keys are configured, else the matching key's.

    Raises Unauthorized when keys are configured and `candidate` is not one of them.
    """
    if not keys:
        return ANONYMOUS
    principal = match_api_key(candidate, keys)
    if principal is None:
        raise Unauthorized(headers={"WWW-Authenticate": "ApiKey"})
    return principal
