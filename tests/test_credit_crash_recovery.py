"""SIGKILL a server during concurrent charged classifications: no failed or lost request is
ever charged, the balance always equals the ledger, and what the dead process held is freed
when its leases run out."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import MODEL_DIR
from tests.factories import jpeg_bytes
from tests.processes import Server, start_server

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery"
CREDITS = 12
REQUESTS = 24


def ledger(data_dir: Path) -> tuple[int, int, int, list[str]]:
    """(balance, ledger sum, live holds, charged result names) of the one user."""
    with contextlib.closing(sqlite3.connect(data_dir / "service.db")) as db:
        (balance,) = db.execute("SELECT credits FROM users").fetchone()
        (total,) = db.execute("SELECT SUM(delta) FROM credit_ledger").fetchone()
        (holds,) = db.execute("SELECT count(*) FROM credit_holds").fetchone()
        charged = [row[0] for row in db.execute("SELECT detail FROM credit_ledger WHERE delta = -1")]
    return balance, total, holds, charged


def live_holds(data_dir: Path) -> int:
    """Holds whose lease has not run out (`expires_at` is stored as naive UTC on SQLite)."""
    with contextlib.closing(sqlite3.connect(data_dir / "service.db")) as db:
        sql = "SELECT count(*) FROM credit_holds WHERE expires_at > strftime('%Y-%m-%d %H:%M:%f', 'now')"
        return int(db.execute(sql).fetchone()[0])


def test_sigkill_during_charged_classifications(servers: list[Server], tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {
        "MODEL_DIR": str(MODEL_DIR),
        "INITIAL_CREDITS": str(CREDITS),
        "ANALYSIS_THREADS": "1",
        "CREDIT_HOLD_LEASE_SECONDS": "3",  # a hold is a lease, renewed while its work runs
    }
    first = start_server(servers, data_dir, "first", env)
    with httpx.Client(base_url=first.base_url, timeout=30) as c:
        assert c.post("/v1/register", json={"username": "alice", "password": PASSWORD}).status_code == 201
        token = c.post("/v1/login", json={"username": "alice", "password": PASSWORD}).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}

    def classify(i: int) -> int | None:
        files = {"file": (f"{i}.jpg", jpeg_bytes((640, 480), (i * 9 % 256, 60, 90)), "image/jpeg")}
        try:
            return httpx.post(
                first.base_url + "/v1/classify", files=files, headers=headers, timeout=30
            ).status_code
        except httpx.HTTPError:
            return None  # the server died under this request: it must not be charged

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(classify, i) for i in range(REQUESTS)]
        time.sleep(0.8)  # some answered, some computing, some queued
        first.kill()
        codes = [f.result() for f in futures]

    balance, total, _, charged = ledger(data_dir)
    assert balance == total, "the balance must always equal the ledger's sum"
    answered = codes.count(200)
    # Every 200 was charged; nothing else was, except an analysis published in the instant
    # before the kill (computed, stored, never delivered): never a failed or lost request.
    assert answered <= len(charged) == CREDITS - balance
    analysis = data_dir / "analysis"
    published = {str(p.relative_to(analysis)) for p in analysis.rglob("*.json")}
    assert set(charged) <= published, "a charge without a published result"

    # The dead process's holds are leases nobody renews: they stop counting within one.
    deadline = time.monotonic() + 30
    while live_holds(data_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert live_holds(data_dir) == 0
    second = start_server(servers, data_dir, "second", env)
    with httpx.Client(base_url=second.base_url, timeout=30) as c:
        me = c.get("/v1/me", headers=headers).json()
        assert me["credits"] == balance
        # Holds of the dead process no longer count: every remaining credit can be spent.
        spent = [
            c.post(
                "/v1/classify", files={"file": ("x.jpg", jpeg_bytes((64, 64), (k, 1, 2)))}, headers=headers
            )
            for k in range(balance + 1)
        ]
        assert [r.status_code for r in spent] == [200] * balance + [402]
    balance, total, holds, _ = ledger(data_dir)
    assert balance == total == 0 and holds == 0
