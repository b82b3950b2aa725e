"""app.services.accounts.refills: seed 000's refill use case through the service (real accounts
and ledger): who may refill, the default amount, an unknown user."""

from __future__ import annotations

import bcrypt
import pytest

from app.core.errors import Forbidden, Unauthorized, UserNotFound
from app.services.accounts.principals import ANONYMOUS_PRINCIPAL, Principal
from tests.factories import CountingSkin
from tests.services.conftest import running

ADMIN = Principal(id="user:999", kind="admin", user_id=999)
PASSWORD = "correct horse battery"


async def test_an_admin_adds_the_default_amount_or_the_one_asked(make_settings) -> None:
    async with running(make_settings(initial_credits=1, token_refill_amount=7), CountingSkin()) as services:
        await services.accounts.register(username="bob", password=PASSWORD)
        done = await services.refills.refill(ADMIN, "bob")
        assert (done.username, done.balance, done.added) == ("bob", 8, 7)
        assert (await services.refills.refill(ADMIN, "BOB", 3)).balance == 11


async def test_the_admin_password_stands_in_for_an_admin(make_settings) -> None:
    pw_hash = bcrypt.hashpw(b"s3cret-admin-pw", bcrypt.gensalt(4)).decode()
    async with running(make_settings(admin_pw_hash=pw_hash, initial_credits=0), CountingSkin()) as services:
        await services.accounts.register(username="bob", password=PASSWORD)
        done = await services.refills.refill(
            None, "bob", 2, admin_password="s3cret-admin-pw", address="1.2.3.4"
        )
        assert done.balance == 2
        with pytest.raises(Forbidden):
            await services.refills.refill(None, "bob", 2, admin_password="wrong", address="1.2.3.4")


async def test_anyone_else_is_refused_and_nothing_is_added(make_settings) -> None:
    async with running(make_settings(initial_credits=0), CountingSkin()) as services:
        user = await services.accounts.register(username="bob", password=PASSWORD)
        with pytest.raises(Unauthorized):
            await services.refills.refill(None, "bob", 5)
        with pytest.raises(Forbidden):
            await services.refills.refill(ANONYMOUS_PRINCIPAL, "bob", 5)
        with pytest.raises(Forbidden):
            await services.refills.refill(
                Principal(id=f"user:{user.id}", kind="user", user_id=user.id), "bob"
            )
        with pytest.raises(Forbidden):  # no ADMIN_PW_HASH: no password matches
            await services.refills.refill(None, "bob", 5, admin_password="anything")
        with pytest.raises(UserNotFound):
            await services.refills.refill(ADMIN, "nobody", 5)
        assert (await services.accounts.profile(user.id)).credits == 0
