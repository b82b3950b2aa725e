"""Standard Webhooks signatures: `whsec_` secrets and `v1,base64(HMAC-SHA256(key, id.ts.body))`.

The key is the base64-decoded part of the secret after `whsec_` (the specification's
format, which its reference libraries, e.g. PyPI `standardwebhooks`, verify).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "whsec_"
KEY_BYTES = 32


def new_secret() -> str:
    """A fresh random secret, `whsec_` + base64 of 32 bytes."""
    return PREFIX + base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,...` signature of one message (`timestamp`: Unix seconds)."""
    key = base64.b64decode(secret.removeprefix(PREFIX))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secrets_: list[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers; one signature per secret, space-separated (the
    current secret, and the previous one during a rotation's grace period)."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, msg_id, timestamp, body) for s in secrets_),
    }
