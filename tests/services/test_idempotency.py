"""Idempotency-Key records: claims across requests and processes, replay records, expiry, recovery."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from app.core.errors import BadRequest, IdempotencyConflict
from app.services.idempotency import IdempotencyRecord, IdempotencyStore


def test_a_claimed_key_conflicts_until_released(tmp_path: Path) -> None:
    store = IdempotencyStore(tmp_path, ttl_seconds=60)
    record_id = store.record_id("key", "alice")
    store.claim(record_id)
    with pytest.raises(IdempotencyConflict):
        store.claim(record_id)
    # Another worker process sharing the directory sees the lock file too.
    with pytest.raises(IdempotencyConflict):
        IdempotencyStore(tmp_path, ttl_seconds=60).claim(record_id)
    store.release(record_id)
    store.claim(record_id)


def test_keys_are_scoped_by_principal(tmp_path: Path) -> None:
    store = IdempotencyStore(tmp_path, ttl_seconds=60)
    assert store.record_id("k", "alice") != store.record_id("k", "bob")


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "ключ"])
def test_bad_keys_are_400(tmp_path: Path, key: str) -> None:
    with pytest.raises(BadRequest):
        IdempotencyStore(tmp_path, ttl_seconds=60).record_id(key, "")


def test_records_round_trip_and_expire(tmp_path: Path) -> None:
    store = IdempotencyStore(tmp_path, ttl_seconds=60)
    fresh = IdempotencyRecord("abc", "3fa85f64-5717-4562-b3fc-2c963f66afa6", time.time())
    store.save("r1", fresh)
    assert store.load("r1") == fresh
    store.save("r2", IdempotencyRecord("abc", fresh.image_id, time.time() - 61))
    assert store.load("r2") is None
    assert store.load("missing") is None
    (tmp_path / "r3.json").write_text("{not json")
    assert store.load("r3") is None


def test_records_of_the_earlier_format_still_replay(tmp_path: Path) -> None:
    image_id = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
    legacy = {
        "fingerprint": "abc",
        "status": 201,
        "body": json.dumps({"image_id": image_id}),
        "location": f"/api/v1/images/{image_id}",
        "created_at": time.time(),
    }
    (tmp_path / "old.json").write_text(json.dumps(legacy))
    loaded = IdempotencyStore(tmp_path, ttl_seconds=60).load("old")
    assert loaded is not None and loaded.image_id == image_id


def test_recover_drops_dead_locks_and_expired_records(tmp_path: Path) -> None:
    store = IdempotencyStore(tmp_path, ttl_seconds=60)
    (tmp_path / "dead.lock").write_text("999999999")
    (tmp_path / "live.lock").write_text(str(os.getppid()))
    store.save("old", IdempotencyRecord("a", "b", time.time()))
    past = time.time() - 120
    os.utime(tmp_path / "old.json", (past, past))
    store.save("new", IdempotencyRecord("a", "b", time.time()))
    store.recover()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.lock", "new.json"]


def test_records_live_in_one_folder_per_scope_and_erasure_removes_that_folder(tmp_path: Path) -> None:
    store = IdempotencyStore(tmp_path, ttl_seconds=60)
    alice, bob = store.record_id("k", "user:1"), store.record_id("k", "user:2")
    for record_id, image_id in ((alice, "a-image"), (bob, "b-image")):
        store.claim(record_id)
        store.save(record_id, IdempotencyRecord("sha", image_id, time.time()))
        store.release(record_id)
    store.claim(store.record_id("in flight", "user:1"))
    assert store.erase_scope("user:1") == 2  # her record and her claim
    assert store.load(alice) is None
    assert store.load(bob) == IdempotencyRecord("sha", "b-image", store.load(bob).created_at)  # type: ignore[union-attr]
    assert [p.name for p in tmp_path.iterdir()] == [IdempotencyStore.scope_folder("user:2")]
    assert store.erase_scope("user:1") == 0
    store.claim(store.record_id("k", "user:1"))  # her folder comes back for a new claim


def test_records_of_the_flat_layout_replay_and_go_with_their_images_erasure(tmp_path: Path) -> None:
    store = IdempotencyStore(tmp_path, ttl_seconds=60)
    record_id = store.record_id("k", "user:1")
    flat = tmp_path / f"{record_id.rpartition('/')[2]}.json"  # where an earlier version saved it
    flat.write_text(json.dumps({"fingerprint": "sha", "image_id": "her-image", "created_at": time.time()}))
    (tmp_path / "someone-else.json").write_text(
        json.dumps({"fingerprint": "sha", "image_id": "his-image", "created_at": time.time()})
    )
    store.recover()
    loaded = store.load(record_id)
    assert loaded is not None and loaded.image_id == "her-image"
    assert store.erase_scope("user:1", ["her-image"]) == 1
    assert store.load(record_id) is None
    assert [p.name for p in tmp_path.iterdir()] == ["someone-else.json"]


def test_recover_looks_into_scope_folders(tmp_path: Path) -> None:
    store = IdempotencyStore(tmp_path, ttl_seconds=60)
    dead, live = store.record_id("dead", "user:1"), store.record_id("live", "user:2")
    (tmp_path / dead).parent.mkdir()
    (tmp_path / f"{dead}.lock").write_text("999999999")
    (tmp_path / live).parent.mkdir()
    (tmp_path / f"{live}.lock").write_text(str(os.getppid()))
    store.save(live, IdempotencyRecord("a", "b", time.time() - 120))
    past = time.time() - 120
    os.utime(tmp_path / f"{live}.json", (past, past))
    store.recover()
    assert [str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")] == [
        live.partition("/")[0],
        f"{live}.lock",
    ]
