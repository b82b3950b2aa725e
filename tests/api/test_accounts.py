"""Accounts: the seeds' registration and login flows, tokens (JWT negatives, rotation, reuse),
roles, credits (holds, charges, the ledger), ownership and erasure."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx
import jwt
import pytest
from PIL import Image
from skimage import data as skimage_data

from tests.conftest import files_under, serve
from tests.factories import jpeg_bytes, photo_jpeg

PASSWORD = "correct horse battery"


@pytest.fixture
async def api(make_settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(make_settings(initial_credits=5, token_refill_amount=7)) as c:
        yield c


async def register(c: httpx.AsyncClient, username: str, **extra: object) -> httpx.Response:
    return await c.post("/api/v1/auth/register", json={"username": username, "password": PASSWORD, **extra})


async def login(c: httpx.AsyncClient, username: str, password: str = PASSWORD) -> dict[str, str]:
    resp = await c.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    return resp.json()


async def user(c: httpx.AsyncClient, username: str) -> dict[str, str]:
    """Register and log in; the bearer headers."""
    assert (await register(c, username)).status_code == 201
    return {"Authorization": f"Bearer {(await login(c, username))['access_token']}"}


async def admin(c: httpx.AsyncClient, username: str = "admin") -> dict[str, str]:
    resp = await c.post("/register", json={"username": username, "password": PASSWORD, "is_admin": True})
    assert resp.status_code == 201, resp.text
    return {"Authorization": f"Bearer {(await login(c, username))['access_token']}"}


def ledger_and_balance(data_dir: Path, user_id: int) -> tuple[int, int]:
    with closing(sqlite3.connect(data_dir / "service.db")) as db:
        (ledger,) = db.execute(
            "SELECT COALESCE(SUM(delta), 0) FROM credit_ledger WHERE user_id=?", (user_id,)
        ).fetchone()
        (balance,) = db.execute("SELECT credits FROM users WHERE id=?", (user_id,)).fetchone()
    return ledger, balance


# -- the seeds' flows ------------------------------------------------------------------------


async def test_seed_003_flow(make_settings) -> None:
    async with serve(make_settings(admin_token="admin_secret_token_12345")) as c:
        reg = await c.post("/register", json={"username": "admin", "password": "admin123", "is_admin": True})
        assert reg.status_code == 201 and reg.json()["is_admin"] is True
        tok = await c.post(
            "/token",
            content=b"username=admin&password=admin123",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert tok.status_code == 200 and tok.json()["token_type"] == "bearer"
        bearer = {"Authorization": f"Bearer {tok.json()['access_token']}"}
        data = await c.post("/forward", files={"data": (None, '{"text": "sample data", "value": 123}')})
        assert data.status_code == 200
        history = await c.get("/history", headers=bearer)
        assert history.status_code == 200
        body = history.json()
        assert body["total"] == 1 and body["items"][0]["request_type"] == "json"
        assert body["items"][0]["status_code"] == 200 and body["items"][0]["route"] == "/forward"
        stats = await c.get("/stats", headers=bearer)
        assert stats.status_code == 200 and stats.json()["total_requests"] == 1
        gone = await c.delete("/history", headers={"Authorization": "Bearer admin_secret_token_12345"})
        assert gone.status_code == 204
        assert (await c.get("/history", headers=bearer)).json()["total"] == 0


async def test_seed_004_flow(api: httpx.AsyncClient) -> None:
    reg = await register(api, "user@example.com", full_name="John Doe")
    assert reg.status_code == 201
    assert reg.json()["full_name"] == "John Doe" and reg.json()["credits"] == 5
    tokens = await login(api, "user@example.com")
    assert {"access_token", "refresh_token", "token_type", "expires_in"} <= set(tokens)
    me = await api.get("/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.json()["username"] == "user@example.com"


async def test_seed_000_flow_with_env_admin(make_settings) -> None:
    import bcrypt

    pw_hash = bcrypt.hashpw(b"s3cret-admin-pw", bcrypt.gensalt(4)).decode()
    async with serve(make_settings(admin_username="root", admin_pw_hash=pw_hash, initial_credits=1)) as c:
        assert (
            await c.post("/v1/register", json={"username": "bob", "password": PASSWORD})
        ).status_code == 201
        tokens = (await c.post("/v1/login", json={"username": "bob", "password": PASSWORD})).json()
        bob = {"Authorization": f"Bearer {tokens['access_token']}"}
        # The admin password (checked against ADMIN_PW_HASH) refills, as seed 000 does...
        refill = await c.post("/v1/refill", json={"username": "bob", "admin_password": "s3cret-admin-pw"})
        assert refill.status_code == 200 and refill.json()["credits"] == 11
        assert (
            await c.post("/v1/refill", json={"username": "bob", "admin_password": "nope"})
        ).status_code == 403
        assert (await c.post("/v1/refill", json={"username": "bob"}, headers=bob)).status_code == 403
        # ...and so does the env admin's token; its bcrypt hash is upgraded to argon2id on login.
        root = (await c.post("/v1/login", json={"username": "root", "password": "s3cret-admin-pw"})).json()
        by_admin = await c.post(
            "/v1/refill",
            json={"username": "bob", "amount": 3},
            headers={"Authorization": f"Bearer {root['access_token']}"},
        )
        assert by_admin.json() == {"username": "bob", "credits": 14, "added": 3}
        classified = await c.post(
            "/v1/classify", files={"file": ("a.jpg", photo_jpeg(), "image/jpeg")}, headers=bob
        )
        assert classified.status_code == 200
        assert (await c.get("/v1/me", headers=bob)).json()["credits"] == 13


async def test_admin_password_guesses_are_throttled_like_logins(make_settings) -> None:
    """Seed 000's admin password is a password: concurrent guesses never check more hashes than
    the login limit, the rest are 429, and the admin's token still refills meanwhile."""
    import bcrypt

    pw_hash = bcrypt.hashpw(b"s3cret-admin-pw", bcrypt.gensalt(4)).decode()
    settings = make_settings(
        admin_username="root",
        admin_pw_hash=pw_hash,
        login_max_failures=3,
        login_address_max_failures=100,  # this address may still sign in as the admin
        login_max_delay_seconds=0,
    )
    async with serve(settings) as c:
        assert (await register(c, "bob")).status_code == 201
        guesses = await asyncio.gather(
            *(
                c.post("/v1/refill", json={"username": "bob", "admin_password": f"guess{i}"})
                for i in range(12)
            )
        )
        statuses = sorted(r.status_code for r in guesses)
        assert statuses == [403] * 3 + [429] * 9, statuses
        assert all("retry-after" in r.headers for r in guesses if r.status_code == 429)
        root = (await c.post("/v1/login", json={"username": "root", "password": "s3cret-admin-pw"})).json()
        by_admin = await c.post(
            "/v1/refill",
            json={"username": "bob", "amount": 2},
            headers={"Authorization": f"Bearer {root['access_token']}"},
        )
        assert by_admin.status_code == 200


async def test_registration_rules(api: httpx.AsyncClient) -> None:
    assert (await register(api, "alice")).status_code == 201
    dup = await register(api, "ALICE")
    assert dup.status_code == 409 and dup.json()["code"] == "username_taken"
    short = await api.post("/v1/register", json={"username": "bob", "password": "short"})
    assert short.status_code == 400 and short.json()["fields"] == ["password"]
    for bad in ("a", "x" * 151, "has space", "semi;colon", "../etc"):
        resp = await api.post("/v1/register", json={"username": bad, "password": PASSWORD})
        assert resp.status_code == 400, bad


async def test_is_admin_needs_an_admin_or_the_bootstrap(make_settings) -> None:
    async with serve(make_settings(admin_bootstrap=False)) as c:
        refused = await c.post("/register", json={"username": "eve", "password": PASSWORD, "is_admin": True})
        assert refused.status_code == 403 and "admin" in refused.json()["detail"]
    async with serve(make_settings(admin_bootstrap=True)) as c:
        first = await admin(c, "boss")
        again = await c.post("/register", json={"username": "eve", "password": PASSWORD, "is_admin": True})
        assert again.status_code == 403
        made = await c.post(
            "/register", json={"username": "deputy", "password": PASSWORD, "is_admin": True}, headers=first
        )
        assert made.status_code == 201 and made.json()["is_admin"] is True


async def test_wrong_password_and_unknown_user_look_alike(api: httpx.AsyncClient) -> None:
    await register(api, "alice")
    wrong = await api.post("/v1/login", json={"username": "alice", "password": "wrong password"})
    unknown = await api.post("/v1/login", json={"username": "nobody", "password": "wrong password"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]


async def test_repeated_failed_logins_are_throttled(make_settings) -> None:
    async with serve(make_settings(login_failures_before_delay=2, login_max_delay_seconds=0.01)) as c:
        codes = [
            (await c.post("/v1/login", json={"username": "target", "password": "guess"})).status_code
            for _ in range(9)
        ]
    assert codes[:8] == [401] * 8 and codes[8] == 429


# -- tokens ----------------------------------------------------------------------------------


def forge(settings_key: bytes, **claims: object) -> str:
    now = datetime.now(UTC)
    payload = {
        "sub": "1",
        "jti": "x",
        "use": "access",
        "iat": now.timestamp(),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
        "iss": "image-analysis-service",
        "aud": "image-analysis-api",
        **claims,
    }
    return jwt.encode(payload, settings_key, algorithm="HS256")


async def test_jwt_negatives_are_401(api: httpx.AsyncClient, data_dir: Path) -> None:
    headers = await user(api, "alice")
    assert (await api.get("/v1/me", headers=headers)).status_code == 200
    with closing(sqlite3.connect(data_dir / "service.db")) as db:  # SECRET_KEY unset: kept there
        key = db.execute("SELECT value FROM app_secrets WHERE name = 'jwt_secret_key'").fetchone()[0].encode()
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(b"=")
    claims = json.loads(base64.urlsafe_b64decode(forge(key).split(".")[1] + "=="))
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    past = int((datetime.now(UTC) - timedelta(minutes=1)).timestamp())
    tokens = await login(api, "alice")
    bad = {
        "alg none": (header + b"." + body + b".").decode(),
        "wrong signature": forge(b"another key that is long enough for HS256"),
        "expired": forge(key, exp=past),
        "wrong audience": forge(key, aud="someone-else"),
        "wrong issuer": forge(key, iss="evil"),
        "no jti": jwt.encode({k: v for k, v in claims.items() if k != "jti"}, key, algorithm="HS256"),
        "refresh as access": tokens["refresh_token"],
        "garbage": "not.a.token",
        # Signed with the real key but out of every range (only a key holder can send them)
        "exp past year 9999": forge(key, exp=10**30),
        "exp 1e308": forge(key, exp=1e308),
        "iat 1e308": forge(key, iat=1e308),
        "sub past int64": forge(key, sub=str(2**70)),
        "sub in other digits": forge(key, sub="\u0661"),
    }
    for name, token in bad.items():
        resp = await api.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 401, name
        assert resp.headers["content-type"] == "application/problem+json"


async def test_token_of_a_deleted_user_is_401(api: httpx.AsyncClient) -> None:
    headers = await user(api, "alice")
    assert (await api.delete("/api/v1/auth/me", headers=headers)).status_code == 204
    assert (await api.get("/v1/me", headers=headers)).status_code == 401
    assert (
        await api.post("/upload", files={"file": ("a.jpg", jpeg_bytes())}, headers=headers)
    ).status_code == 401


async def test_refresh_rotates_and_reuse_revokes_the_family(api: httpx.AsyncClient) -> None:
    await register(api, "alice")
    first = await login(api, "alice")
    rotated = (await api.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})).json()
    assert rotated["refresh_token"] != first["refresh_token"]
    # The old refresh token is replayed (it leaked): the whole family dies, access tokens too.
    reuse = await api.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reuse.status_code == 401
    again = await api.post("/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert again.status_code == 401
    old_access = {"Authorization": f"Bearer {rotated['access_token']}"}
    assert (await api.get("/v1/me", headers=old_access)).status_code == 401
    fresh = await login(api, "alice")  # a new login works
    assert (
        await api.get("/v1/me", headers={"Authorization": f"Bearer {fresh['access_token']}"})
    ).status_code == 200


async def test_logout_revokes_the_access_token_and_the_refresh_family(api: httpx.AsyncClient) -> None:
    await register(api, "alice")
    tokens = await login(api, "alice")
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    out = await api.post(
        "/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]}, headers=headers
    )
    assert out.status_code == 204
    assert (await api.get("/v1/me", headers=headers)).status_code == 401
    refresh = await api.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refresh.status_code == 401


async def test_non_admins_get_403_on_admin_routes(api: httpx.AsyncClient) -> None:
    headers = await user(api, "alice")
    for method, path in [("GET", "/history"), ("DELETE", "/history"), ("GET", "/stats")]:
        resp = await api.request(method, path, headers=headers)
        assert resp.status_code == 403, path
    assert (await api.get("/history")).status_code == 401  # anonymous: no credentials (seed 003)


async def test_without_anonymous_access_credentials_are_required(make_settings) -> None:
    async with serve(make_settings(anonymous_access=False)) as c:
        for method, path in [("POST", "/upload"), ("POST", "/analyze"), ("GET", "/api/v1/images")]:
            assert (await c.request(method, path)).status_code == 401, path
        for path in ("/health", "/healthz", "/readyz", "/docs", "/openapi.json"):
            assert (await c.get(path)).status_code == 200, path
        headers = await user(c, "alice")  # registration and login stay open
        up = await c.post("/upload", files={"file": ("a.jpg", jpeg_bytes())}, headers=headers)
        assert up.status_code == 201


# -- credits ---------------------------------------------------------------------------------


async def test_twenty_concurrent_classifications_with_five_credits(
    api: httpx.AsyncClient, data_dir: Path
) -> None:
    headers = await user(api, "alice")
    responses = await asyncio.gather(
        *(
            api.post(
                "/v1/classify", files={"file": (f"{i}.jpg", jpeg_bytes(color=(i, 9, 9)))}, headers=headers
            )
            for i in range(20)
        )
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 5 + [402] * 15
    assert {r.json()["code"] for r in responses if r.status_code == 402} == {"insufficient_credits"}
    me = (await api.get("/v1/me", headers=headers)).json()
    assert me["credits"] == 0
    assert ledger_and_balance(data_dir, me["id"]) == (0, 0)


async def test_cached_repeats_skin_and_failures_are_free(api: httpx.AsyncClient, data_dir: Path) -> None:
    headers = await user(api, "alice")
    image_id = (await api.post("/upload", files={"file": ("a.jpg", photo_jpeg())}, headers=headers)).json()[
        "image_id"
    ]
    for _ in range(3):
        assert (
            await api.post("/api/v1/analyze", json={"image_id": image_id}, headers=headers)
        ).status_code == 200
        classify = {"image_id": image_id, "analyzer": "classify"}
        assert (await api.post("/api/v1/analyze", json=classify, headers=headers)).status_code == 200
    no_face = {"image_id": image_id, "analyzer": "face", "params": {"min_face_px": 5000}}
    assert (await api.post("/api/v1/analyze", json=no_face, headers=headers)).status_code == 422
    me = (await api.get("/v1/me", headers=headers)).json()
    assert me["credits"] == 4  # one classification computed; skin, repeats and a failure cost nothing
    assert ledger_and_balance(data_dir, me["id"]) == (4, 4)


async def test_identical_jobs_submitted_together_are_charged_once(
    api: httpx.AsyncClient, data_dir: Path
) -> None:
    headers = await user(api, "alice")
    photo = io.BytesIO()
    Image.fromarray(skimage_data.astronaut()).save(photo, "JPEG", quality=90)
    body = {"image": base64.b64encode(photo.getvalue()).decode()}
    submits = await asyncio.gather(
        *(api.post("/api/v1/frontal/crop/submit", json=body, headers=headers) for _ in range(4))
    )
    assert [s.status_code for s in submits] == [202] * 4
    for job_id in (s.json()["job_id"] for s in submits):
        with anyio.fail_after(30):
            while (
                status := (await api.get(f"/api/v1/frontal/crop/status/{job_id}", headers=headers)).json()
            )["status"] not in ("completed", "failed"):
                await anyio.sleep(0.05)
        assert status["status"] == "completed", status
    me = (await api.get("/v1/me", headers=headers)).json()
    assert me["credits"] == 4  # computed once (the others joined it or hit its cache): one credit
    assert ledger_and_balance(data_dir, me["id"]) == (4, 4)


# -- ownership and erasure -------------------------------------------------------------------


async def test_another_user_cannot_see_read_list_analyze_or_delete(api: httpx.AsyncClient) -> None:
    alice, bob = await user(api, "alice"), await user(api, "bob")
    image_id = (await api.post("/upload", files={"file": ("a.jpg", jpeg_bytes())}, headers=alice)).json()[
        "image_id"
    ]
    for method, path, body in [
        ("GET", f"/api/v1/images/{image_id}", None),
        ("GET", f"/api/v1/images/{image_id}/content", None),
        ("POST", "/api/v1/analyze", {"image_id": image_id}),
        ("DELETE", f"/api/v1/images/{image_id}", None),
    ]:
        resp = await api.request(method, path, json=body, headers=bob)
        assert resp.status_code == 404 and resp.json()["code"] == "image_not_found", path
        assert (await api.request(method, path, json=body)).status_code == 404  # nor anonymous
    assert (await api.get("/api/v1/images", headers=bob)).json()["total"] == 0
    listed = (await api.get("/api/v1/images", headers=alice)).json()
    assert [item["image_id"] for item in listed["items"]] == [image_id]
    boss = await admin(api)
    assert (await api.get(f"/api/v1/images/{image_id}", headers=boss)).status_code == 200


async def test_erasure_leaves_no_file_of_the_user(api: httpx.AsyncClient, data_dir: Path) -> None:
    alice, bob = await user(api, "alice"), await user(api, "bob")
    kept = (await api.post("/upload", files={"file": ("b.jpg", jpeg_bytes())}, headers=bob)).json()[
        "image_id"
    ]
    before = set(files_under(data_dir))
    mine = []
    for i in range(3):
        up = await api.post(
            "/upload", files={"file": (f"{i}.jpg", jpeg_bytes(color=(i, 1, 1)))}, headers=alice
        )
        mine.append(up.json()["image_id"])
        await api.post("/api/v1/analyze", json={"image_id": mine[-1]}, headers=alice)
    job = await api.post(
        "/api/v1/frontal/crop/submit",
        json={
            "image": base64.b64encode(photo_jpeg()).decode(),
            "landmarks": [{"x": i, "y": i} for i in range(68)],
        },
        headers=alice,
    )
    assert job.status_code == 202
    assert (await api.delete("/api/v1/auth/me", headers=alice)).status_code == 204
    left = set(files_under(data_dir)) - before
    assert not [f for f in left if any(image_id in f for image_id in mine)]
    assert not [f for f in left if f.startswith("jobs/")], left
    assert (await api.get(f"/api/v1/images/{kept}", headers=bob)).status_code == 200
    with closing(sqlite3.connect(data_dir / "service.db")) as db:
        rows = db.execute("SELECT count(*) FROM images WHERE owner LIKE 'user:%'").fetchone()
    assert rows == (1,)


async def test_history_survives_a_restart(make_settings) -> None:
    settings = make_settings(history_flush_seconds=60)  # only the shutdown writes it
    async with serve(settings) as c:
        await c.post("/forward", files={"data": (None, '{"a": 1}')})
    async with serve(settings) as c:
        boss = await admin(c)
        assert (await c.get("/history", headers=boss)).json()["total"] == 1


async def test_a_remembered_token_is_refused_at_once_after_logout_or_erasure(make_settings) -> None:
    # Views cached for an hour: only the invalidation in this process can refuse these tokens.
    async with serve(make_settings(initial_credits=5, user_cache_seconds=3600)) as c:
        for username, leave in (("alice", "logout"), ("bob", "erase")):
            headers = await user(c, username)
            up = await c.post("/api/v1/upload", files={"file": ("a.jpg", jpeg_bytes())}, headers=headers)
            assert up.status_code == 201, up.text
            analyze = {"json": {"image_id": up.json()["image_id"]}, "headers": headers}
            for _ in range(3):  # computed, then cache hits with the remembered principal
                assert (await c.post("/api/v1/analyze", **analyze)).status_code == 200
            if leave == "logout":
                assert (await c.post("/api/v1/auth/logout", headers=headers)).status_code == 204
            else:
                assert (await c.delete("/api/v1/auth/me", headers=headers)).status_code == 204
            refused = await c.post("/api/v1/analyze", **analyze)
            assert refused.status_code == 401, (username, refused.text)
            assert refused.json()["code"] == "unauthorized"
            assert (await c.get("/v1/me", headers=headers)).status_code == 401
