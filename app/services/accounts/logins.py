"""The login use case: a device cookie's own allowance, or a per-username rate limit first.

A login without a valid device cookie for its username is also limited per username
(password guessing spread over many addresses); with one, the device has its own allowance
(`app.services.accounts.login_throttle`), whatever others send for the username.
"""

from __future__ import annotations

from app.services.accounts.service import AccountService, SignIn
from app.services.accounts.settings import DeviceCookieSettings
from app.services.accounts.usernames import username_key
from app.services.rate_limits import RateLimits


class Logins:
    """Signs users in (see the module); the route sets the device cookie it returns."""

    def __init__(
        self, accounts: AccountService, rate_limits: RateLimits, cookie: DeviceCookieSettings
    ) -> None:
        self.accounts = accounts
        self.rate_limits = rate_limits
        self.cookie = cookie

    async def sign_in(
        self, username: str, password: str, *, address: str | None, device_cookie: str | None
    ) -> SignIn:
        """Tokens and a new device cookie (see `AccountService.login`); TooManyRequests past the
        per-username limit of a login without the username's device cookie."""
        device = self.accounts.device(device_cookie, username)
        if device is None:
            await self.rate_limits.hit("login", f"u:{username_key(username)}")
        return await self.accounts.login(username=username, password=password, address=address, device=device)
