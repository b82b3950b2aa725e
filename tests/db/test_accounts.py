"""Accounts over HTTP on each back-end (SQLite and PostgreSQL): inputs one back-end stores and
the other refuses, ids that must never be reused, and token rotation under a race."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import serve

PASSWORD = "correct horse battery"


@pytest.fixture
async def api(make_settings, empty_database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(make_settings(database_url=empty_database_url, user_cache_seconds=0)) as c:
        yield c


async def register(api: httpx.AsyncClient, username: str, **extra: object) -> httpx.Response:
    return await api.post("/api/v1/auth/register", json={"username": username, "password": PASSWORD, **extra})


async def tokens(api: httpx.AsyncClient, username: str) -> dict[str, str]:
    resp = await api.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert resp.status_code == 200, resp.text
    return resp.json()


def bearer(pair: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


async def test_a_deleted_accounts_token_never_names_the_next_account(api: httpx.AsyncClient) -> None:
    gone = (await register(api, "first")).json()["id"]
    old = await tokens(api, "first")
    assert (await api.delete("/api/v1/auth/me", headers=bearer(old))).status_code == 204
    assert (await register(api, "second")).json()["id"] != gone
    assert (await api.get("/v1/me", headers=bearer(old))).status_code == 401


async def test_nul_characters_and_long_case_folds_are_400_or_401_never_500(api: httpx.AsyncClient) -> None:
    # "ß" case-folds to "ss": 100 of them make a 200-character key (the column holds 150).
    long_fold = await api.post("/v1/register", json={"username": "ß" * 100, "password": PASSWORD})
    assert long_fold.status_code == 400 and long_fold.json()["fields"] == ["username"]
    assert (await register(api, "alice", full_name="Al\x00ice")).status_code == 400
    login = await api.post("/v1/login", json={"username": "a\x00b", "password": PASSWORD})
    assert login.status_code == 401
    form = await api.post("/token", data={"username": "a\x00b", "password": PASSWORD})
    assert form.status_code == 401
    too_long = await api.post("/v1/login", json={"username": "ß" * 100, "password": PASSWORD})
    assert too_long.status_code == 401


async def test_a_refresh_race_leaves_no_live_token_of_the_family(api: httpx.AsyncClient) -> None:
    assert (await register(api, "alice")).status_code == 201
    for _ in range(5):
        pair = await tokens(api, "alice")
        body = {"refresh_token": pair["refresh_token"]}
        answers = await asyncio.gather(*(api.post("/api/v1/auth/refresh", json=body) for _ in range(2)))
        assert sorted(a.status_code for a in answers) == [200, 401]
        (won,) = [a.json() for a in answers if a.status_code == 200]
        # The replay revoked the family, the winner's new refresh token included.
        again = await api.post("/api/v1/auth/refresh", json={"refresh_token": won["refresh_token"]})
        assert again.status_code == 401


async def test_history_filters_out_of_range_are_400(api: httpx.AsyncClient) -> None:
    await api.post("/register", json={"username": "root", "password": PASSWORD, "is_admin": True})
    headers = bearer(await tokens(api, "root"))
    for query in (
        "offset=9223372036854775808",
        "since=0001-01-01T00:00:00%2B05:00",
        "until=9999-12-31T23:59:59-05:00",
        "since=2026-01-01T00:00:00",
    ):
        for method, path in (("GET", "/history"), ("GET", "/stats"), ("DELETE", "/history")):
            if "offset" in query and (method, path) != ("GET", "/history"):
                continue
            resp = await api.request(method, f"{path}?{query}", headers=headers)
            assert resp.status_code == 400, (method, path, query, resp.text)
    assert (await api.get("/stats?since=2026-01-01T00:00:00%2B05:00", headers=headers)).status_code == 200
