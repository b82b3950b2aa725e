"""Two replicas (apps with separate DATA_DIRs, no shared disk) on one database, each back-end:
Idempotency-Keys, the generated signing key and credit charges are shared records."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from app.composition import ServiceContainer
from app.main import create_app
from app.services.accounts.principals import Principal
from tests.conftest import shared_registry
from tests.factories import jpeg_bytes

PASSWORD = "correct horse battery"


@contextlib.asynccontextmanager
async def replica(settings: object) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    application = create_app(settings, registry=shared_registry())  # type: ignore[arg-type]
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c, application


@pytest.fixture
async def replicas(
    make_settings, database_url: str, tmp_path: Path
) -> AsyncIterator[list[tuple[httpx.AsyncClient, FastAPI]]]:
    """Two apps, each with its own data dir, on one migrated database."""
    async with contextlib.AsyncExitStack() as stack:
        pair = []
        for name in ("a", "b"):
            settings = make_settings(
                data_dir=tmp_path / name, database_url=database_url, user_cache_seconds=0, initial_credits=5
            )
            pair.append(await stack.enter_async_context(replica(settings)))
        yield pair


async def bearer(api: httpx.AsyncClient, username: str) -> dict[str, str]:
    assert (
        await api.post("/v1/register", json={"username": username, "password": PASSWORD})
    ).status_code == 201
    login = await api.post("/v1/login", json={"username": username, "password": PASSWORD})
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def upload(api: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> asyncio.Future[httpx.Response]:
    files = {"file": ("x.jpg", body, "image/jpeg")}
    return asyncio.ensure_future(api.post("/api/v1/upload", files=files, headers=headers))


async def test_one_idempotency_key_sent_to_both_replicas_makes_one_image(
    replicas: list[tuple[httpx.AsyncClient, FastAPI]],
) -> None:
    (a, _), (b, _) = replicas
    auth = await bearer(a, "alice")  # issued by a, accepted by b
    assert (await b.get("/v1/me", headers=auth)).status_code == 200
    photo = jpeg_bytes((800, 600), (10, 20, 30))
    keyed = {**auth, "Idempotency-Key": "one-key"}

    answers = await asyncio.gather(*(upload(api, photo, keyed) for api in (a, b, a, b)))
    assert {r.status_code for r in answers} <= {201, 409}, [r.text for r in answers]
    created = [r for r in answers if r.status_code == 201]
    assert created and len({r.json()["image_id"] for r in created}) == 1
    assert sum(r.headers.get("idempotent-replayed") != "true" for r in created) == 1
    image_id = created[0].json()["image_id"]
    for api in (a, b):
        listing = (await api.get("/api/v1/images", headers=auth)).json()
        assert [i["image_id"] for i in listing["items"]] == [image_id], listing
        # A later retry on either replica replays it; another file under the key is 422.
        again = await upload(api, photo, keyed)
        assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
        assert again.json()["image_id"] == image_id
        other = await upload(api, jpeg_bytes((64, 64), (1, 2, 3)), keyed)
        assert other.status_code == 422, other.text

    # After a DELETE of the image (by the replica holding its bytes: they are not shared
    # here), a retry uploads afresh.
    deletes = [(await api.delete(f"/api/v1/images/{image_id}", headers=auth)).status_code for api in (a, b)]
    assert 204 in deletes, deletes
    fresh = await upload(a, photo, keyed)
    assert fresh.status_code == 201 and fresh.headers.get("idempotent-replayed") != "true"
    assert fresh.json()["image_id"] != image_id

    # Erasing the account (on b) deletes its keys: a new account's same key starts afresh.
    assert (await b.delete("/api/v1/auth/me", headers=auth)).status_code == 204
    services: ServiceContainer = replicas[0][1].state.services
    async with services.engine.connect() as connection:
        left = await connection.execute(text("SELECT count(*) FROM idempotency_keys"))
        assert left.scalar_one() == 0


async def test_both_replicas_sign_with_the_one_generated_key(
    replicas: list[tuple[httpx.AsyncClient, FastAPI]],
) -> None:
    (a, app_a), (b, app_b) = replicas
    key_a = app_a.state.services.jwt_config.key
    assert key_a == app_b.state.services.jwt_config.key and len(key_a) >= 32
    auth = await bearer(b, "bob")
    assert (await a.get("/v1/me", headers=auth)).status_code == 200
    # Neither wrote a key file of its own.
    assert not any((Path(s.state.services.settings.data_dir) / "secret_key").exists() for s in (app_a, app_b))


async def test_an_earlier_versions_key_file_is_adopted(
    make_settings, database_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "old"
    data_dir.mkdir()
    (data_dir / "secret_key").write_text("an earlier version's key, long enough for HS256\n")
    settings = make_settings(data_dir=data_dir, database_url=database_url)
    async with replica(settings) as (api, _):
        auth = await bearer(api, "carol")
    token = auth["Authorization"].removeprefix("Bearer ")
    key = b"an earlier version's key, long enough for HS256"
    claims = jwt.decode(token, key, algorithms=["HS256"], audience="image-analysis-api")
    assert claims["sub"]
    # A second replica with a fresh data dir signs with the adopted key too.
    async with replica(make_settings(data_dir=tmp_path / "new", database_url=database_url)) as (api, _):
        assert (await api.get("/v1/me", headers=auth)).status_code == 200


async def test_a_charge_retried_on_both_replicas_is_charged_once(
    replicas: list[tuple[httpx.AsyncClient, FastAPI]],
) -> None:
    (a, app_a), (b, app_b) = replicas
    auth = await bearer(a, "dave")
    user_id = (await a.get("/v1/me", headers=auth)).json()["id"]
    dave = Principal(id=f"user:{user_id}", kind="user", user_id=user_id)

    async def charge(application: FastAPI, subject: str) -> None:
        credits = application.state.services.credits
        async with credits.metered(dave, "analysis:classify", subject, subject=subject) as work:
            await asyncio.sleep(0)
            work.computed = True

    await asyncio.gather(*(charge(app, "classify/cache-key-1") for app in (app_a, app_b, app_a, app_b)))
    await charge(app_b, "classify/cache-key-1")  # a later retry
    for api in (a, b):
        assert (await api.get("/v1/me", headers=auth)).json()["credits"] == 4
    await charge(app_a, "classify/cache-key-2")  # another subject is charged
    assert (await b.get("/v1/me", headers=auth)).json()["credits"] == 3
