"""Lockouts that lock out attackers only: device cookies (OWASP), atomic failure counts, the
per-address limit and the password-hashing bound, through HTTP, in memory and in a real Redis."""

from __future__ import annotations

import asyncio
import re
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI

from app.core.config import Settings
from tests.logins import (
    LIMIT,
    PASSWORD,
    SMALL,
    TOKEN_FIELDS,
    client_from,
    codes,
    login,
    register,
    running,
)
from tests.redis_servers import redis_url


@pytest.fixture(params=["memory", "redis"])
def store_settings(request: pytest.FixtureRequest) -> dict[str, object]:
    if request.param == "memory":
        return {}
    # A generous timeout: under load the 0.5 s default can expire, and an outage fails open.
    return {"redis_url": redis_url(), "redis_timeout_seconds": 5}


@pytest.fixture
async def app(
    make_settings: Callable[..., Settings], store_settings: dict[str, object]
) -> AsyncIterator[FastAPI]:
    async with running(make_settings(**SMALL, **store_settings)) as application:
        yield application


async def test_the_owner_signs_in_from_a_known_device_while_an_attacker_is_locked_out(app: FastAPI) -> None:
    alice = await register(app)
    async with (
        client_from(app, "10.0.0.1") as owner,
        client_from(app, "10.0.0.2") as attacker,
        client_from(app, "10.0.0.3") as stranger,
    ):
        assert (await login(owner, alice)).status_code == 200  # this device signs in once
        assert owner.cookies.get("device")
        assert await codes(attacker, alice, LIMIT + 2) == [401] * LIMIT + [429, 429]
        locked = await login(attacker, alice, PASSWORD)  # even the right password
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) >= 1
        assert locked.headers["content-type"] == "application/problem+json"
        assert locked.json()["code"] == "too_many_requests"
        # The owner's device has its own allowance; a client without the cookie is untrusted.
        assert (await login(owner, alice)).status_code == 200
        assert (await login(stranger, alice)).status_code == 429


async def test_the_owner_is_not_held_by_the_per_username_rate_limit_either(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(**{**SMALL, "rate_limit_login_username": "3/minute"})
    async with running(settings) as app:
        alice = await register(app)
        async with client_from(app, "10.0.1.1") as owner, client_from(app, "10.0.1.2") as attacker:
            assert (await login(owner, alice)).status_code == 200  # untrusted yet: 1 of the 3
            assert await codes(attacker, alice, 3) == [401, 401, 429]
            assert (await login(owner, alice)).status_code == 200


async def test_a_device_cookie_counts_only_for_its_own_username(app: FastAPI) -> None:
    alice, bob = await register(app), await register(app)
    async with client_from(app, "10.0.2.1") as device, client_from(app, "10.0.2.2") as attacker:
        assert (await login(device, alice)).status_code == 200
        assert await codes(attacker, bob, LIMIT) == [401] * LIMIT
        # Alice's cookie makes this device trusted for alice, not for bob.
        assert (await login(device, bob)).status_code == 429
        assert (await login(device, alice)).status_code == 200


async def test_a_forged_or_altered_device_cookie_is_an_untrusted_client(app: FastAPI) -> None:
    alice = await register(app)
    async with client_from(app, "10.0.3.1") as device, client_from(app, "10.0.3.3") as thief:
        assert (await login(device, alice)).status_code == 200
        real = device.cookies["device"]
        assert await guesses_from_many_addresses(app, alice, LIMIT, "10.3.0") == [401] * LIMIT
        version, nonce, issued, signature = real.split(".")
        forged = [
            f"{version}.{nonce}.{int(issued) + 1}.{signature}",
            f"{version}.{'A' * len(nonce)}.{issued}.{signature}",
            f"{version}.{nonce}.{issued}.{signature[:-2]}AA",
            "v1.x.1.y",
            "garbage",
            real + "." + real,
        ]
        for value in forged:
            thief.cookies.set("device", value)
            assert (await login(thief, alice, PASSWORD)).status_code == 429, value
        thief.cookies.set("device", real)  # a stolen cookie works: OWASP accepts that
        assert (await login(thief, alice, PASSWORD)).status_code == 200


async def test_a_device_that_keeps_failing_is_locked_itself(app: FastAPI) -> None:
    alice = await register(app)
    async with (
        client_from(app, "10.0.4.1") as device,
        client_from(app, "10.0.4.1") as other_device,
        client_from(app, "10.0.4.2") as untrusted,
    ):
        assert (await login(device, alice)).status_code == 200
        assert (await login(other_device, alice)).status_code == 200
        assert await codes(device, alice, LIMIT + 1) == [401] * LIMIT + [429]
        assert (await login(device, alice, PASSWORD)).status_code == 429
        # Only that device: another device of hers and untrusted clients are untouched.
        assert (await login(other_device, alice)).status_code == 200
        assert (await login(untrusted, alice)).status_code == 200


async def test_a_right_password_on_a_trusted_device_clears_its_failures(app: FastAPI) -> None:
    alice = await register(app)
    async with client_from(app, "10.0.5.1") as device:
        assert (await login(device, alice)).status_code == 200
        first = device.cookies["device"]
        assert await codes(device, alice, LIMIT - 1) == [401] * (LIMIT - 1)
        assert (await login(device, alice)).status_code == 200
        assert device.cookies["device"] != first  # a new cookie (nonce) at every sign-in
        device.cookies.set("device", first)  # the old one is still valid, its count cleared
        assert await codes(device, alice, LIMIT) == [401] * LIMIT


async def guesses_from_many_addresses(app: FastAPI, username: str, count: int, prefix: str) -> list[int]:
    """Wrong logins for `username`, each from an address of its own (no address limit is hit)."""
    answers = []
    for i in range(count):
        async with client_from(app, f"{prefix}.{i + 1}") as c:
            answers.append((await login(c, username, "wrong guess")).status_code)
    return answers


async def test_the_owners_untrusted_login_does_not_reset_an_attackers_count(app: FastAPI) -> None:
    alice = await register(app)
    async with client_from(app, "10.0.6.1") as curl:
        assert await guesses_from_many_addresses(app, alice, LIMIT - 2, "10.6.0") == [401] * (LIMIT - 2)
        assert (await login(curl, alice)).status_code == 200
        curl.cookies.clear()  # curl without a cookie jar: an untrusted client again
        assert await guesses_from_many_addresses(app, alice, 3, "10.6.1") == [401, 401, 429]
        assert (await login(curl, alice)).status_code == 429


async def test_one_address_guessing_many_usernames_is_locked_out(app: FastAPI) -> None:
    async with client_from(app, "10.0.7.1") as sprayer, client_from(app, "10.0.7.2") as other:
        names = [f"nobody-{uuid.uuid4().hex[:8]}" for _ in range(LIMIT + 1)]
        assert [(await login(sprayer, n, "guess")).status_code for n in names] == [401] * LIMIT + [429]
        assert (await login(other, names[-1], "guess")).status_code == 401


async def test_concurrent_wrong_logins_check_no_more_passwords_than_the_limit(app: FastAPI) -> None:
    alice = await register(app)
    async with client_from(app, "10.0.8.1") as attacker:
        before = await login_failures(attacker)
        answers = await asyncio.gather(*(login(attacker, alice, f"guess {i}") for i in range(60)))
        counted = Counter(r.status_code for r in answers)
        assert counted == {401: LIMIT, 429: 60 - LIMIT}
        assert await login_failures(attacker) - before == LIMIT  # passwords checked (and wrong)


async def login_failures(c: httpx.AsyncClient) -> float:
    text = (await c.get("/metrics")).text
    return float(re.search(r"^login_failures_total (\S+)$", text, re.M)[1])


@pytest.mark.parametrize("path", ["/v1/login", "/api/v1/auth/login", "/token"])
@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_every_login_route_sets_the_device_cookie_and_keeps_its_body(
    app: FastAPI, path: str, scheme: str
) -> None:
    alice = await register(app)
    async with client_from(app, "10.0.9.1", base_url=f"{scheme}://testserver") as c:
        credentials = {"username": alice, "password": PASSWORD}
        resp = await (c.post(path, data=credentials) if path == "/token" else c.post(path, json=credentials))
    assert resp.status_code == 200, resp.text
    assert set(resp.json()) == TOKEN_FIELDS and resp.json()["token_type"] == "bearer"
    cookie = resp.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert cookie.startswith("device=v1.")
    assert {"httponly", "path", "max-age", "samesite"} <= attributes
    assert "samesite=strict" in cookie.lower() and "path=/" in cookie.lower()
    assert ("secure" in attributes) == (scheme == "https")


async def test_a_saturated_password_hasher_answers_503_at_once_and_counts_no_failure(
    make_settings: Callable[..., Settings], store_settings: dict[str, object]
) -> None:
    settings = make_settings(**{**SMALL, "password_hash_queue_limit": 0}, **store_settings)
    async with running(settings) as app:
        alice = await register(app)
        hasher = app.state.services.accounts.hasher
        release = threading.Event()
        busy = asyncio.ensure_future(hasher.run(release.wait))  # holds the only hashing slot
        await asyncio.sleep(0)
        async with client_from(app, "10.0.10.1") as c:
            try:
                answers = [await login(c, alice, "wrong guess") for _ in range(LIMIT + 2)]
            finally:
                release.set()
                await busy
            assert {r.status_code for r in answers} == {503}
            problem = answers[0]
            assert problem.headers["content-type"] == "application/problem+json"
            assert (
                problem.json()["code"] == "service_unavailable" and int(problem.headers["retry-after"]) >= 1
            )
            # None of them counted as a failure: the full allowance is still there.
            assert await codes(c, alice, LIMIT + 1) == [401] * LIMIT + [429]
