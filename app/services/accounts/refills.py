"""Seed 000's refill use case: an admin adds credits to a user.

The caller is an admin (by token), or proves it with seed 000's admin password
(`ADMIN_PW_HASH`, checked like a login: bounded hashing, throttled per address); the amount
defaults to `TOKEN_REFILL_AMOUNT`.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.errors import Forbidden, Unauthorized, UserNotFound
from app.services.accounts.credits import CreditService
from app.services.accounts.principals import Principal
from app.services.accounts.service import AccountService


@dataclass(frozen=True)
class Refilled:
    """A refill done: whose, the new balance, how much was added."""

    username: str
    balance: int
    added: int


class Refills:
    """Adds credits for an admin (see the module)."""

    def __init__(self, accounts: AccountService, credits: CreditService, default_amount: int) -> None:
        self.accounts = accounts
        self.credits = credits
        self.default_amount = default_amount

    async def refill(
        self,
        caller: Principal | None,
        username: str,
        amount: int | None = None,
        *,
        admin_password: str | None = None,
        address: str | None = None,
    ) -> Refilled:
        """Add `amount` (default TOKEN_REFILL_AMOUNT) credits to `username`. Unauthorized with
        neither an admin's credentials nor a password, Forbidden for anyone else (a wrong
        password included), UserNotFound for an unknown user."""
        allowed = caller is not None and caller.is_admin
        if not allowed and admin_password is not None:
            allowed = await self.accounts.admin_password_matches(admin_password, address=address)
        if not allowed:
            if caller is None and admin_password is None:
                raise Unauthorized("An admin token or the admin password is required")
            raise Forbidden("This needs an admin")
        user = await self.accounts.find(username)
        if user is None:
            raise UserNotFound(f"No user {username!r}")
        added = amount or self.default_amount
        balance = await self.credits.refill(user.id, added)
        return Refilled(user.username, balance, added)
