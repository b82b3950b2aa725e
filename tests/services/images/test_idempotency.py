"""The Idempotency-Key store over the database (each back-end): claims, leases, records, expiry,
erasure, and the import of an earlier version's record files."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.errors import BadRequest, IdempotencyConflict
from app.services.images.idempotency import IdempotencyStore

IMAGE = "3fa85f64-5717-4562-b3fc-2c963f66afa6"


def store(sessions: async_sessionmaker[AsyncSession], **kwargs: object) -> IdempotencyStore:
    return IdempotencyStore(sessions, **{"ttl_seconds": 60, "lease_seconds": 60.0, **kwargs})  # type: ignore[arg-type]


async def finish(keys: IdempotencyStore, key: str, scope: str, image_id: str = IMAGE) -> None:
    """Claim `key`, record `image_id` for it, release it."""
    claim = await keys.claim(key, scope)
    async with keys.sessions.begin() as session:
        await keys.record(session, claim, "sha", image_id)
    await keys.release(claim)


async def test_a_claimed_key_conflicts_until_released_also_for_another_replica(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    one, other = store(sessions), store(sessions)
    claim = await one.claim("key", "alice")
    for keys in (one, other):
        with pytest.raises(IdempotencyConflict):
            await keys.claim("key", "alice")
    await other.claim("key", "bob")  # scoped by principal
    await one.release(claim)
    await other.release(await other.claim("key", "alice"))


async def test_concurrent_claims_of_one_key_one_wins(sessions: async_sessionmaker[AsyncSession]) -> None:
    replicas = [store(sessions) for _ in range(4)]
    results = await asyncio.gather(*(r.claim("same", "alice") for r in replicas), return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, IdempotencyConflict) for r in results if isinstance(r, BaseException))


async def test_a_crashed_claim_expires_with_its_lease(sessions: async_sessionmaker[AsyncSession]) -> None:
    crashed = store(sessions, lease_seconds=1.0)
    claim = await crashed.claim("key", "alice")
    crashed._renewals.pop(claim.token).cancel()  # the process died: nobody renews it
    with pytest.raises(IdempotencyConflict):
        await store(sessions).claim("key", "alice")
    await asyncio.sleep(1.2)
    taken = await store(sessions).claim("key", "alice")
    # The dead claim can no longer record anything.
    async with sessions() as session, session.begin():
        with pytest.raises(IdempotencyConflict):
            await crashed.record(session, claim, "sha", IMAGE)
    assert taken.key_hash == claim.key_hash


async def test_a_running_claim_is_renewed(sessions: async_sessionmaker[AsyncSession]) -> None:
    keys = store(sessions, lease_seconds=1.0)
    claim = await keys.claim("key", "alice")
    await asyncio.sleep(1.5)
    with pytest.raises(IdempotencyConflict):
        await store(sessions).claim("key", "alice")
    await keys.release(claim)


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "ключ"])
async def test_bad_keys_are_400(sessions: async_sessionmaker[AsyncSession], key: str) -> None:
    with pytest.raises(BadRequest):
        await store(sessions).claim(key, "alice")


async def test_records_round_trip_expire_and_are_purged(sessions: async_sessionmaker[AsyncSession]) -> None:
    keys = store(sessions, ttl_seconds=1)
    await finish(keys, "key", "alice")
    claim = await keys.claim("key", "alice")
    loaded = await keys.load(claim)
    assert loaded is not None and (loaded.fingerprint, loaded.image_id) == ("sha", IMAGE)
    await keys.release(claim)  # a recorded key stays
    await asyncio.sleep(1.2)
    claim = await keys.claim("key", "alice")
    assert await keys.load(claim) is None
    await keys.release(claim)
    assert await keys.purge() == 1


async def test_a_failed_request_leaves_no_row(sessions: async_sessionmaker[AsyncSession]) -> None:
    keys = store(sessions)
    await keys.release(await keys.claim("key", "alice"))
    assert await keys.erase_scope("alice") == 0


async def test_erasure_deletes_the_scope_only(sessions: async_sessionmaker[AsyncSession]) -> None:
    keys = store(sessions)
    await finish(keys, "k", "user:1", "a-image")
    await finish(keys, "k", "user:2", "b-image")
    await keys.claim("in flight", "user:1")
    assert await keys.erase_scope("user:1") == 2  # her record and her claim
    claim = await keys.claim("k", "user:2")
    loaded = await keys.load(claim)
    assert loaded is not None and loaded.image_id == "b-image"


async def test_record_files_of_earlier_versions_are_imported_once(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    root = tmp_path / "idempotency"
    keys = store(sessions, legacy_root=root)
    claim = await keys.claim("k", "user:1")  # only for its hashes
    await keys.release(claim)
    (root / claim.scope_hash).mkdir(parents=True)
    record = {"fingerprint": "sha", "image_id": "her-image", "created_at": time.time()}
    (root / claim.scope_hash / f"{claim.key_hash}.json").write_text(json.dumps(record))
    expired = {**record, "created_at": time.time() - 120}
    (root / claim.scope_hash / f"{'e' * 64}.json").write_text(json.dumps(expired))
    flat = await keys.claim("flat", "user:2")
    await keys.release(flat)
    body = {"fingerprint": "sha", "body": json.dumps({"image_id": "his-image"}), "created_at": time.time()}
    (root / f"{flat.key_hash}.json").write_text(json.dumps(body))  # the oldest layout
    (root / "broken.json").write_text("{not json")

    await keys.recover()
    assert list(root.iterdir()) == []
    replayed = await keys.load(await keys.claim("k", "user:1"))
    assert replayed is not None and replayed.image_id == "her-image"
    old = await keys.claim("flat", "user:2")
    assert (await keys.load(old)).image_id == "his-image"  # type: ignore[union-attr]
    await keys.release(old)
    # A flat record names no scope: erasure finds it by its image.
    assert await keys.erase_scope("user:2", ["his-image"]) == 1


async def test_a_release_cancelled_meanwhile_still_frees_the_key_and_stays_cancelled(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    keys = store(sessions)
    claim = await keys.claim("key", "alice")
    releasing = asyncio.create_task(keys.release(claim))
    await asyncio.sleep(0)  # it waits for the lease renewal to end
    releasing.cancel()  # the request's task is cancelled again (a shut-down, a timeout)
    with pytest.raises(asyncio.CancelledError):
        await releasing
    await store(sessions).release(await store(sessions).claim("key", "alice"))  # free at once
