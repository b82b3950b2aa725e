"""Settings of logins: failure limits, device cookies, password hashing (part of `Settings`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings


class LoginSettings(BaseSettings):
    """Login lockouts (OWASP device cookies) and the password-hashing bound; see README, Accounts."""

    # Each counter (a username's untrusted clients, a device, an address) lets this many
    # attempts through in the window at full speed; each further one waits (0.25 s doubling,
    # up to the cap) until the counter's limit, past which it is 429 with Retry-After
    login_failures_before_delay: int = Field(default=5, ge=1)
    login_failure_window_seconds: float = Field(default=900.0, gt=0)
    login_max_delay_seconds: float = Field(default=2.0, ge=0)
    # Limits per username for logins without its device cookie (default: 4 x the count
    # above), per device cookie and per client address (default: the username's)
    login_max_failures: int | None = Field(default=None, ge=1)
    login_device_max_failures: int | None = Field(default=None, ge=1)
    login_address_max_failures: int | None = Field(default=None, ge=1)
    # The signed device cookie a successful login sets (HttpOnly, Path=/); Secure: default
    # when the request came over HTTPS or ENVIRONMENT=production
    login_device_cookie_name: str = Field(default="device", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    login_device_cookie_days: int = Field(default=365, ge=1, le=3650)
    login_device_cookie_samesite: Literal["strict", "lax"] = "strict"
    login_device_cookie_secure: bool | None = None
    # Password hashes (argon2id, ~40 ms CPU each) at once; callers that may wait for one, and
    # for how long, before 503 with Retry-After
    password_hash_concurrency: int = Field(default=1, ge=1)
    password_hash_queue_limit: int = Field(default=8, ge=0)
    password_hash_max_wait_seconds: float = Field(default=1.0, gt=0)
    # How much lower the hashing threads' CPU priority is (Linux nice increment; 0: the same)
    password_hash_nice: int = Field(default=10, ge=0, le=19)

    @property
    def login_untrusted_limit(self) -> int:
        """Failures per username from clients without its device cookie before 429."""
        return self.login_max_failures or 4 * self.login_failures_before_delay

    @property
    def login_device_limit(self) -> int:
        """Failures per device cookie before that device is locked out."""
        return self.login_device_max_failures or self.login_untrusted_limit

    @property
    def login_address_limit(self) -> int:
        """Failures per client address (untrusted logins) before 429."""
        return self.login_address_max_failures or self.login_untrusted_limit
