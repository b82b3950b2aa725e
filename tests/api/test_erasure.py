"""Erasure that leaves nothing personal: an account's images, results, idempotency records and
the personal parts of its history go; what others stored stays. Checked through HTTP, then on
disk and in the database directly."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from PIL import Image
from skimage import data as skimage_data

from tests.conftest import files_under, serve
from tests.factories import encode, jpeg_bytes

PASSWORD = "correct horse battery"
NON_PERSONAL = ("request_type", "route", "status_code", "processing_time", "input_data_size", "created_at")


@pytest.fixture
async def api(make_settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(make_settings(initial_credits=5)) as c:
        yield c


async def user(c: httpx.AsyncClient, username: str) -> dict[str, str]:
    body = {"username": username, "password": PASSWORD}
    assert (await c.post("/api/v1/auth/register", json=body)).status_code == 201
    token = (await c.post("/api/v1/auth/login", json=body)).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


async def admin(c: httpx.AsyncClient) -> dict[str, str]:
    body = {"username": "boss", "password": PASSWORD}
    assert (await c.post("/register", json={**body, "is_admin": True})).status_code == 201
    token = (await c.post("/api/v1/auth/login", json=body)).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


async def upload(c: httpx.AsyncClient, body: bytes, headers: dict[str, str], key: str) -> str:
    resp = await c.post(
        "/api/v1/upload",
        files={"file": ("me.jpg", body, "image/jpeg")},
        headers={**headers, "Idempotency-Key": key},
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["image_id"])


def rows(data_dir: Path, sql: str) -> list[dict[str, object]]:
    with closing(sqlite3.connect(data_dir / "service.db")) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute(sql)]


def every_value_in_the_database(data_dir: Path) -> str:
    tables = [str(t["name"]) for t in rows(data_dir, "SELECT name FROM sqlite_master WHERE type = 'table'")]
    return "\n".join(repr(row) for table in tables for row in rows(data_dir, f'SELECT * FROM "{table}"'))


def every_file(data_dir: Path) -> str:
    """Every name and every byte under `data_dir` but the database (read as text)."""
    parts = []
    for name in files_under(data_dir):
        if not name.startswith("service.db"):
            parts += [name, (data_dir / name).read_bytes().decode("latin-1")]
    return "\n".join(parts)


async def test_erasure_leaves_nothing_personal(api: httpx.AsyncClient, data_dir: Path) -> None:
    alice, bob = await user(api, "alice"), await user(api, "bob")
    face = encode(Image.fromarray(skimage_data.astronaut()), "JPEG")
    plain = jpeg_bytes(color=(9, 99, 199))
    mine = [await upload(api, face, alice, "same-key"), await upload(api, plain, alice, "other-key")]
    analyzed = await api.post(
        "/api/v1/analyze", json={"image_id": mine[0], "analyzer": "face"}, headers=alice
    )
    assert analyzed.status_code == 200 and "landmarks" in analyzed.json()
    assert (await api.post("/api/v1/analyze", json={"image_id": mine[1]}, headers=alice)).status_code == 200
    missing = await api.post(
        "/api/v1/analyze", json={"image_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6"}, headers=alice
    )
    assert missing.status_code == 404
    theirs = await upload(api, plain, bob, "same-key")  # the same key and file in another scope
    kept = await api.post("/api/v1/analyze", json={"image_id": theirs}, headers=bob)
    assert kept.status_code == 200
    boss = await admin(api)
    assert (await api.get("/history", headers=boss)).json()["total"] == 4  # a read writes the buffer
    before = rows(data_dir, "SELECT * FROM request_history ORDER BY id")
    assert [r["principal"] for r in before] == ["user:1"] * 3 + ["user:2"]
    assert analyzed.text.startswith(str(before[0]["result"]))  # face geometry, before the erasure

    assert (await api.delete("/api/v1/auth/me", headers=alice)).status_code == 204

    history = rows(data_dir, "SELECT * FROM request_history ORDER BY id")
    # Her rows stay for the statistics, with their non-personal fields only.
    assert [{c: r[c] for c in NON_PERSONAL} for r in history] == [
        {c: r[c] for c in NON_PERSONAL} for r in before
    ]
    assert [(r["principal"], r["result"], r["error_message"]) for r in history[:3]] == [
        (None, None, None)
    ] * 3
    assert history[3]["principal"] is not None and history[3]["result"] == kept.text
    # Nothing anywhere names her images or their bytes' hashes (idempotency records included).
    traces = [*mine, hashlib.sha256(face).hexdigest()]
    everything = every_value_in_the_database(data_dir) + every_file(data_dir)
    assert [t for t in traces if t in everything] == []
    # Bob's record still replays.
    again = await api.post(
        "/api/v1/upload",
        files={"file": ("me.jpg", plain, "image/jpeg")},
        headers={**bob, "Idempotency-Key": "same-key"},
    )
    assert again.headers.get("idempotent-replayed") == "true" and again.json()["image_id"] == theirs
