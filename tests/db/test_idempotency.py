"""Idempotency-Key rows on each back-end: a live claim excludes others, a lapsed one can be
taken over, only the claim's holder records or releases, records expire and are purged.
(`tests/services/images/test_idempotency.py` tests the store over them.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import idempotency as keys

NOW = datetime(2026, 1, 1, tzinfo=UTC)
LEASE = NOW + timedelta(seconds=60)
DAY = NOW + timedelta(days=1)
IMAGE = "00000000-0000-4000-8000-000000000001"


async def _claim(
    sessions: async_sessionmaker[AsyncSession], token: str, now: datetime = NOW, key: str = "k1"
) -> bool:
    async with sessions.begin() as session:
        return await keys.claim(
            session, key_hash=key, scope_hash="s1", token=token, now=now, until=now + timedelta(seconds=60)
        )


async def test_a_live_claim_excludes_others_until_its_lease_ends(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    assert await _claim(sessions, "a")
    assert not await _claim(sessions, "b")
    async with sessions.begin() as session:
        assert await keys.renew(session, key_hash="k1", token="a", until=LEASE + timedelta(seconds=60))
        assert not await keys.renew(session, key_hash="k1", token="b", until=DAY)
    assert not await _claim(sessions, "b", now=LEASE + timedelta(seconds=1))  # renewed: still a's
    assert await _claim(sessions, "b", now=LEASE + timedelta(seconds=61))  # lapsed: taken over
    async with sessions.begin() as session:  # a's lease is gone: it records nothing
        assert not await keys.record(
            session, key_hash="k1", token="a", fingerprint="f", image_id=IMAGE, now=NOW, expires_at=DAY
        )


async def test_a_record_is_loaded_until_it_expires_and_then_purged(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    assert await _claim(sessions, "a")
    async with sessions.begin() as session:
        assert await keys.record(
            session, key_hash="k1", token="a", fingerprint="f", image_id=IMAGE, now=NOW, expires_at=DAY
        )
        await keys.release(session, key_hash="k1", token="a")  # a recorded key stays, unclaimed
    async with sessions() as session:
        found = await keys.load(session, key_hash="k1", now=NOW)
        assert found is not None and (found.image_id, found.fingerprint, found.claim_token) == (
            IMAGE,
            "f",
            None,
        )
        assert await keys.load(session, key_hash="k1", now=DAY) is None
    async with sessions.begin() as session:
        assert await keys.purge_expired(session, now=NOW) == 0
        assert await keys.purge_expired(session, now=DAY) == 1


async def test_a_released_claim_without_a_record_is_gone(sessions: async_sessionmaker[AsyncSession]) -> None:
    assert await _claim(sessions, "a")
    async with sessions.begin() as session:
        await keys.release(session, key_hash="k1", token="b")  # not b's: nothing happens
    assert not await _claim(sessions, "c")
    async with sessions.begin() as session:
        await keys.release(session, key_hash="k1", token="a")
    assert await _claim(sessions, "c")


async def test_import_keeps_existing_keys_and_erase_removes_a_scope_and_its_images(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    assert await _claim(sessions, "a", key="k1")
    row = {"scope_hash": "s2", "fingerprint": "f", "created_at": NOW, "expires_at": DAY}
    async with sessions.begin() as session:
        imported = await keys.import_records(
            session,
            rows=[
                {**row, "key_hash": "k1", "image_id": IMAGE},  # exists: kept as it is
                {**row, "key_hash": "k2", "image_id": IMAGE},
                {**row, "key_hash": "k3", "image_id": "00000000-0000-4000-8000-000000000002"},
            ],
        )
        assert imported == 2 and await keys.import_records(session, rows=[]) == 0
    async with sessions() as session:
        assert (await keys.load(session, key_hash="k2", now=NOW)) is not None
        assert await keys.load(session, key_hash="k1", now=NOW) is None  # the claim, not the import
    async with sessions.begin() as session:
        # scope s1 (k1), and k2 which names the erased image; k3 (another image of s2) stays
        assert await keys.erase(session, scope_hash="s1", image_ids=[IMAGE]) == 2
    async with sessions() as session:
        assert (await keys.load(session, key_hash="k3", now=NOW)) is not None
