"""Username and password rules: the case-insensitive identity of a username, what a valid
username, password and full name are (a ValidationFailed naming the field otherwise)."""

from __future__ import annotations

import unicodedata
from typing import Protocol

from app.core.errors import ValidationFailed

USERNAME_CHARS = frozenset("._@+-")
MAX_USERNAME = 150  # the column's length


def username_key(username: str) -> str:
    """The case-insensitive identity of a username."""
    return unicodedata.normalize("NFKC", username).casefold()


def storable_key(key: str) -> bool:
    """Whether a username key can name a stored user (fits its column; no NUL, which
    PostgreSQL cannot store)."""
    return len(key) <= MAX_USERNAME and "\x00" not in key


def _invalid(field: str, detail: str) -> ValidationFailed:
    return ValidationFailed(
        f"Invalid request: {field}: {detail}",
        extra={"fields": [field], "errors": [{"field": field, "message": "invalid", "type": "value"}]},
    )


def check_username(raw: str) -> str:
    """A valid username (NFKC-normalized), or ValidationFailed."""
    username = unicodedata.normalize("NFKC", raw).strip()
    if (
        not 3 <= len(username) <= MAX_USERNAME
        or not all(ch.isalnum() or ch in USERNAME_CHARS for ch in username)
        or not storable_key(username_key(username))  # case folding can lengthen it ("ß" -> "ss")
    ):
        raise _invalid("username", f"3-{MAX_USERNAME} letters, digits or . _ @ + -")
    return username


class PasswordBounds(Protocol):
    """The password length settings (Settings, or a section that carries them)."""

    @property
    def password_min_length(self) -> int: ...

    @property
    def password_max_length(self) -> int: ...


def check_password(password: str, settings: PasswordBounds) -> None:
    """Nothing for a password of the configured length that is not all blanks, else ValidationFailed."""
    low, high = settings.password_min_length, settings.password_max_length
    if not low <= len(password) <= high or not password.strip():
        raise _invalid("password", f"{low} to {high} characters")


def check_full_name(full_name: str | None) -> str | None:
    """A full name without control characters (NUL, line breaks), or ValidationFailed."""
    if full_name is not None and any(unicodedata.category(ch) == "Cc" for ch in full_name):
        raise _invalid("full_name", "no control characters")
    return full_name
