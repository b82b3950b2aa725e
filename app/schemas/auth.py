"""Account schemas: registration (three seeds' shapes), login, tokens, profile, refill."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

Username = Field(min_length=1, max_length=150, examples=["user@example.com"])
Password = Field(min_length=1, max_length=4096, examples=["correct horse battery"])


class Credentials(BaseModel):
    """Seed 000's registration and every JSON login."""

    model_config = ConfigDict(extra="forbid")

    username: str = Username
    password: str = Password


class RegisterWithRole(Credentials):
    """Seed 003: `is_admin` is honoured for an admin caller, or for the first admin (ADMIN_BOOTSTRAP)."""

    is_admin: bool = False


class RegisterWithName(Credentials):
    """Seed 004."""

    full_name: str | None = Field(default=None, max_length=200, examples=["John Doe"])


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=4096)


class LogoutRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str | None = Field(default=None, max_length=4096, description="Also revoke its family")


class TokenRead(BaseModel):
    """An access token (30 min by default) and the refresh token that renews it (7 days)."""

    access_token: str
    token_type: str = Field(examples=["bearer"])
    expires_in: int = Field(description="Seconds until the access token expires")
    refresh_token: str
    refresh_expires_in: int


class UserRead(BaseModel):
    """A profile: who, role, credit balance."""

    id: int
    username: str
    full_name: str | None
    is_admin: bool
    credits: int
    created_at: datetime


class RefillRequest(BaseModel):
    """Seed 000: add credits to a user (default TOKEN_REFILL_AMOUNT)."""

    model_config = ConfigDict(extra="forbid")

    username: str = Username
    amount: int | None = Field(default=None, ge=1, le=1_000_000)
    admin_password: str | None = Field(
        default=None, max_length=4096, description="Instead of an admin token: the password of ADMIN_PW_HASH"
    )


class RefillRead(BaseModel):
    username: str
    credits: int
    added: int
