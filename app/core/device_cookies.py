"""Device cookies (OWASP, "Slow Down Online Guessing Attacks with Device Cookies"): pure signing.

A device that signed in as a user gets a cookie `v1.<nonce>.<issued at>.<signature>`; the
signature is an HMAC-SHA256, with a key derived from SECRET_KEY, over the version, the nonce,
the issue time and the user's username key. The username is not in the cookie (it says
nothing to whoever reads it) but is bound by the signature: the cookie is valid only for a
login that names the same user. The nonce identifies the device for its own failure count.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

VERSION = "v1"
MAX_COOKIE_CHARS = 200  # a real one is ~70; anything longer is not ours
_DERIVATION = b"image-analysis-service/device-cookie/v1"


@dataclass(frozen=True)
class Device:
    """A device cookie that checked out for one username."""

    nonce: str
    issued_at: int


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class DeviceCookies:
    """Issues and checks device cookies with a key derived from the service secret."""

    def __init__(self, secret: bytes | Callable[[], bytes], max_age_seconds: int) -> None:
        self._secret = secret
        self._derived: bytes | None = None
        self.max_age_seconds = max_age_seconds

    @property
    def _key(self) -> bytes:
        """The cookie key, derived on first use (the service secret may load after start-up)."""
        if self._derived is None:
            secret = self._secret() if callable(self._secret) else self._secret
            self._derived = hmac.new(secret, _DERIVATION, hashlib.sha256).digest()
        return self._derived

    def _sign(self, nonce: str, issued_at: int, username_key: str) -> str:
        message = f"{VERSION}.{nonce}.{issued_at}.".encode() + username_key.encode("utf-8", "surrogatepass")
        return _b64(hmac.new(self._key, message, hashlib.sha256).digest())

    def issue(self, username_key: str, now: float | None = None) -> str:
        """A new cookie value (fresh nonce) for a device that just signed in as `username_key`."""
        nonce = _b64(secrets.token_bytes(16))
        issued_at = int(time.time() if now is None else now)
        return f"{VERSION}.{nonce}.{issued_at}.{self._sign(nonce, issued_at, username_key)}"

    def read(self, value: str | None, username_key: str, now: float | None = None) -> Device | None:
        """The device of a valid, unexpired cookie issued for `username_key`; None for anything
        else (absent, malformed, forged, for another user, expired)."""
        if not value or len(value) > MAX_COOKIE_CHARS:
            return None
        parts = value.split(".")
        if len(parts) != 4 or parts[0] != VERSION or not parts[2].isascii() or not parts[2].isdigit():
            return None
        _, nonce, issued, signature = parts
        issued_at = int(issued)
        expected = self._sign(nonce, issued_at, username_key)
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "surrogateescape")):
            return None
        age = (time.time() if now is None else now) - issued_at
        if not -300 <= age <= self.max_age_seconds:  # a few minutes of clock skew between replicas
            return None
        return Device(nonce=nonce, issued_at=issued_at)
