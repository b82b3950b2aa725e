"""Webhook rows on each back-end: an event fires once, an attempt is claimed by one process,
an outcome is written only under its claim, secrets are shared and rotated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import webhooks as rows

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


async def test_fire_once_claim_once_record_under_the_claim(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        for n in range(2):
            await rows.add(
                session, delivery_id=f"msg_{n}", principal="key:a", subject="job-1", url="http://x/", now=NOW
            )
    async with sessions.begin() as session:
        assert await rows.due(session, now=NOW, limit=10) == []  # awaiting: not due
        assert sorted(await rows.fire(session, subject="job-1", event_type="t", payload="{}", now=NOW)) == [
            "msg_0",
            "msg_1",
        ]
    async with sessions.begin() as session:
        assert await rows.fire(session, subject="job-1", event_type="t", payload="{other}", now=NOW) == []
        assert sorted(await rows.due(session, now=NOW, limit=10)) == ["msg_0", "msg_1"]

    won: list[str] = []

    async def claim(token: str) -> None:
        async with sessions.begin() as session:
            row = await rows.claim(
                session, delivery_id="msg_0", token=token, now=NOW, until=NOW + timedelta(minutes=1)
            )
        if row is not None:
            assert row.attempts == 1 and row.payload == "{}"
            won.append(token)

    async with anyio.create_task_group() as group:
        for token in ("a" * 32, "b" * 32, "c" * 32):
            group.start_soon(claim, token)
    assert len(won) == 1
    async with sessions.begin() as session:
        assert await rows.due(session, now=NOW, limit=10) == ["msg_1"]  # leased until NOW + 1 min
        assert not await rows.record(
            session, delivery_id="msg_0", token="z" * 32, values={"status": rows.DELIVERED}
        )
        assert await rows.record(
            session, delivery_id="msg_0", token=won[0], values={"status": rows.DELIVERED, "finished_at": NOW}
        )
    async with sessions() as session:
        listed = {r.id: r.status for r in await rows.recent(session, principal="key:a", limit=10)}
        assert listed == {"msg_0": rows.DELIVERED, "msg_1": rows.PENDING}
        assert await rows.recent(session, principal="key:b", limit=10) == []
    async with sessions.begin() as session:
        assert await rows.purge(session, finished_before=NOW + timedelta(seconds=1), awaiting_before=NOW) == 1
        assert await rows.erase_principal(session, principal="key:a") == 1


async def test_secrets_are_created_once_and_rotated_with_a_grace(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        first = await rows.get_or_create_secret(session, principal="user:1", candidate="whsec_A", now=NOW)
    async with sessions.begin() as session:
        again = await rows.get_or_create_secret(session, principal="user:1", candidate="whsec_B", now=NOW)
    assert first.secret == again.secret == "whsec_A"
    async with sessions.begin() as session:
        rotated = await rows.rotate_secret(
            session, principal="user:1", new="whsec_C", now=NOW, grace=timedelta(hours=1)
        )
    assert (rotated.secret, rotated.previous, rotated.previous_until) == (
        "whsec_C",
        "whsec_A",
        NOW + timedelta(hours=1),
    )
