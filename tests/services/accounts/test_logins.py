"""app.services.accounts.logins: a login without the username's device cookie counts against the
per-username rate limit, whatever address it comes from; one with a valid cookie for that
username does not (the service of a running app, in memory)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from app.core.config import Settings
from app.core.errors import TooManyRequests, Unauthorized
from app.services.accounts.logins import Logins
from tests.logins import PASSWORD, SMALL, register, running


async def test_logins_without_the_device_cookie_share_the_per_username_limit(
    make_settings: Callable[..., Settings],
) -> None:
    async with running(make_settings(**{**SMALL, "rate_limit_login_username": "3/minute"})) as app:
        alice = await register(app)
        logins: Logins = app.state.services.logins
        signed_in = await logins.sign_in(alice, PASSWORD, address="10.0.0.1", device_cookie=None)  # 1 of 3
        assert signed_in.device_cookie and signed_in.tokens
        with pytest.raises(Unauthorized):
            await logins.sign_in(alice, "wrong", address="10.0.0.2", device_cookie=None)  # 2 of 3
        with pytest.raises(Unauthorized):
            await logins.sign_in(alice, "wrong", address="10.0.0.3", device_cookie=None)  # 3 of 3
        with pytest.raises(TooManyRequests):
            await logins.sign_in(alice, PASSWORD, address="10.0.0.4", device_cookie=None)
        with pytest.raises(TooManyRequests):  # a forged cookie is no cookie
            await logins.sign_in(alice, PASSWORD, address="10.0.0.1", device_cookie="garbage")
        again = await logins.sign_in(
            alice, PASSWORD, address="10.0.0.1", device_cookie=signed_in.device_cookie
        )
        assert again.tokens
