"""The request-history repository on both back-ends: insert, page, filters, delete, unlink, statistics."""

from __future__ import annotations

import random
from dataclasses import asdict
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import history, migrate
from app.db.engine import create_engine, session_factory
from app.db.history import HistoryFilter, HistoryStats
from app.db.models import RequestLog

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T10 = T0 + timedelta(seconds=10)
Sessions = async_sessionmaker[AsyncSession]


def row(i: int, **values: Any) -> dict[str, Any]:
    """A history row: an image request at T0 + i seconds unless `values` say otherwise."""
    base: dict[str, Any] = {
        "request_type": "image",
        "route": "/forward",
        "principal": f"user:{i % 3}",
        "processing_time": 0.1 + i / 1000,
        "input_data_size": 1000 + i,
        "image_width": 640,
        "image_height": 480,
        "status_code": 200,
        "result": f"r{i}",
        "created_at": T0 + timedelta(seconds=i),
    }
    return {**base, **values}


async def insert(sessions: Sessions, rows: list[dict[str, Any]]) -> None:
    async with sessions.begin() as session:
        await history.insert_many(session, rows=rows)


async def everything(sessions: Sessions) -> list[RequestLog]:
    async with sessions() as session:
        return list(await session.scalars(select(RequestLog).order_by(RequestLog.id)))


async def test_insert_many_round_trips_every_column(sessions: Sessions) -> None:
    json_row = {"request_type": "json", "route": "/forward", "processing_time": 0.25, "status_code": 400}
    await insert(sessions, [row(1), json_row])
    first, second = await everything(sessions)
    assert {c: getattr(first, c) for c in row(1)} == row(1)
    assert first.created_at.tzinfo is not None and first.created_at.utcoffset() == timedelta(0)
    assert first.error_message is None
    assert (second.principal, second.image_width, second.image_height, second.result) == (None,) * 4
    assert second.created_at.tzinfo is not None  # filled in: now
    assert abs(second.created_at - datetime.now(UTC)) < timedelta(minutes=1)


async def test_insert_many_writes_a_batch_larger_than_one_statement(sessions: Sessions) -> None:
    # SQLite takes a batch as multi-row INSERTs of at most SQLITE_ROWS rows each
    count = 2 * history._RowInsert.SQLITE_ROWS + 345
    await insert(sessions, [row(i, result=None if i % 7 else f"r{i}") for i in range(count)])
    stored = await everything(sessions)
    assert len(stored) == count
    assert [r.processing_time for r in stored] == [row(i)["processing_time"] for i in range(count)]
    assert [r.created_at for r in stored] == [row(i)["created_at"] for i in range(count)]
    assert [r.result for r in stored] == [None if i % 7 else f"r{i}" for i in range(count)]


async def test_insert_many_of_nothing_does_nothing(sessions: Sessions) -> None:
    await insert(sessions, [])
    assert await everything(sessions) == []


async def test_list_page_newest_first_with_total_limit_and_offset(sessions: Sessions) -> None:
    # Several rows share a created_at: the id (insertion order) breaks the tie, newest first.
    await insert(sessions, [row(i, created_at=T0 + timedelta(seconds=i // 3)) for i in range(25)])
    ids = [r.id for r in await everything(sessions)]
    expected = [ids[i] for i in sorted(range(25), key=lambda i: (i // 3, ids[i]), reverse=True)]
    async with sessions() as session:
        total, page = await history.list_page(session, limit=10, offset=0)
        assert (total, [r.id for r in page]) == (25, expected[:10])
        total, page = await history.list_page(session, limit=10, offset=20)
        assert (total, [r.id for r in page]) == (25, expected[20:])
        total, page = await history.list_page(session, limit=10, offset=30)
        assert (total, page) == (25, [])


async def test_list_page_applies_each_filter(sessions: Sessions) -> None:
    rows = [
        row(i, request_type=("image", "json", "url")[i % 3], status_code=(200, 400, 403, 200)[i % 4])
        for i in range(40)
    ]
    await insert(sessions, rows)
    cases = [
        (HistoryFilter(), lambda r: True),
        (HistoryFilter(request_type="json"), lambda r: r["request_type"] == "json"),
        (HistoryFilter(status_code=200), lambda r: r["status_code"] == 200),
        (HistoryFilter(since=T0 + timedelta(seconds=10)), lambda r: r["created_at"] >= T10),
        (HistoryFilter(until=T0 + timedelta(seconds=10)), lambda r: r["created_at"] < T10),
        (
            HistoryFilter("url", 403, T0 + timedelta(seconds=5), T0 + timedelta(seconds=35)),
            lambda r: (
                r["request_type"] == "url"
                and r["status_code"] == 403
                and T0 + timedelta(seconds=5) <= r["created_at"] < T0 + timedelta(seconds=35)
            ),
        ),
        (HistoryFilter(request_type="nothing"), lambda r: False),
    ]
    async with sessions() as session:
        for filter_, matches in cases:
            wanted = sorted((r["result"] for r in rows if matches(r)), key=lambda s: -int(s[1:]))
            total, page = await history.list_page(session, filter=filter_, limit=100, offset=0)
            assert (total, [r.result for r in page]) == (len(wanted), wanted), filter_


async def test_since_is_inclusive_and_until_exclusive_across_time_zones(sessions: Sessions) -> None:
    await insert(sessions, [row(i) for i in range(5)])
    since = (T0 + timedelta(seconds=2)).astimezone(timezone(timedelta(hours=3)))  # the same instant
    async with sessions() as session:
        filter_ = HistoryFilter(since=since, until=since + timedelta(seconds=2))
        total, page = await history.list_page(session, filter=filter_)
        assert (total, [r.result for r in page]) == (2, ["r3", "r2"])


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError):
        HistoryFilter(since=datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        HistoryFilter(until=datetime(2026, 1, 1))


async def test_delete_with_filters_returns_the_count(sessions: Sessions) -> None:
    await insert(sessions, [row(i, request_type="json" if i % 2 else "image") for i in range(20)])
    async with sessions.begin() as session:
        assert await history.delete(session, filter=HistoryFilter(request_type="json", since=T10)) == 5
    assert len(await everything(sessions)) == 15
    async with sessions.begin() as session:
        assert await history.delete(session, filter=HistoryFilter(request_type="url")) == 0
        assert await history.delete(session) == 15
    assert await everything(sessions) == []


async def test_erase_principal_keeps_the_rows_without_anything_personal(sessions: Sessions) -> None:
    rows_in = [
        row(i, principal="user:alice" if i < 4 else "user:bob", error_message=f"e{i}") for i in range(10)
    ]
    await insert(sessions, rows_in)
    async with sessions.begin() as session:
        assert await history.erase_principal(session, "user:alice") == 4
        assert await history.erase_principal(session, "user:nobody") == 0
    rows = await everything(sessions)
    assert [r.principal for r in rows] == [None] * 4 + ["user:bob"] * 6
    assert [r.result for r in rows] == [None] * 4 + [f"r{i}" for i in range(4, 10)]
    assert [r.error_message for r in rows] == [None] * 4 + [f"e{i}" for i in range(4, 10)]
    kept = ("route", "request_type", "status_code", "processing_time", "input_data_size", "created_at")
    assert [[getattr(r, c) for c in kept] for r in rows] == [[r[c] for c in kept] for r in rows_in]


def expected_stats(rows: list[dict[str, Any]]) -> HistoryStats:
    """What NumPy says about `rows` (averages skip NULLs)."""
    if not rows:
        return HistoryStats(0, None, None, None, None, None, None, None)
    times = np.array([r["processing_time"] for r in rows], dtype=np.float64)

    def mean(column: str) -> float | None:
        values = [r[column] for r in rows if r.get(column) is not None]
        return float(np.mean(values)) if values else None

    median, p95, p99 = (float(np.percentile(times, q)) for q in (50, 95, 99))
    return HistoryStats(
        len(rows), float(np.mean(times)), median, p95, p99, mean("input_data_size"),
        mean("image_width"), mean("image_height"),
    )  # fmt: skip


def assert_stats_equal(actual: HistoryStats, expected: HistoryStats, *, backend: str) -> None:
    assert actual.total_requests == expected.total_requests
    for name, value in asdict(expected).items():
        got = getattr(actual, name)
        if value is None:
            assert got is None, name
        elif name.startswith(("median", "percentile")) and backend == "sqlite":
            assert got == value, name  # the same interpolation as NumPy's, bit for bit
        else:  # SQL sums in another order than NumPy's pairwise sum (and PostgreSQL's lerp)
            assert got == pytest.approx(value, rel=1e-12, abs=1e-15), name
        assert got is None or isinstance(got, float) or name == "total_requests", name


def random_rows(seed: int, n: int) -> list[dict[str, Any]]:
    """Rows of all three kinds with many duplicate times; JSON requests have no image size."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        kind = rng.choice(("image", "image", "json", "url"))
        if rng.random() < 0.3:
            time = rng.choice((0.5, 0.25, 1.0))  # exact duplicates
        else:
            time = round(rng.lognormvariate(-1.5, 1.0), 3 if rng.random() < 0.5 else 9)
        image = kind != "json"
        rows.append(
            row(
                i,
                request_type=kind,
                processing_time=time,
                status_code=rng.choice((200, 200, 200, 400, 403)),
                input_data_size=rng.randint(10, 5_000_000) if rng.random() < 0.95 else None,
                image_width=rng.randint(16, 4000) if image else None,
                image_height=rng.randint(16, 4000) if image else None,
                created_at=T0 + timedelta(seconds=rng.randint(0, 3600)),
            )
        )
    return rows


def backend_of(sessions: Sessions) -> str:
    return sessions.kw["bind"].dialect.name


@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_stats_equal_numpy(sessions: Sessions, seed: int) -> None:
    rows = random_rows(seed, 2000 + seed)
    await insert(sessions, rows)
    since, until = T0 + timedelta(seconds=600), T0 + timedelta(seconds=2400)
    filters = [
        (HistoryFilter(), lambda r: True),
        (HistoryFilter(request_type="image"), lambda r: r["request_type"] == "image"),
        (HistoryFilter(request_type="json"), lambda r: r["request_type"] == "json"),
        (
            HistoryFilter(status_code=200, since=since, until=until),
            lambda r: r["status_code"] == 200 and since <= r["created_at"] < until,
        ),
    ]
    backend = backend_of(sessions)
    async with sessions() as session:
        for filter_, matches in filters:
            actual = await history.stats(session, filter=filter_)
            assert_stats_equal(actual, expected_stats([r for r in rows if matches(r)]), backend=backend)
        json_only = await history.stats(session, filter=HistoryFilter(request_type="json"))
    assert json_only.total_requests > 0 and json_only.average_image_width is None


async def test_stats_of_no_request_are_none(sessions: Sessions) -> None:
    empty = HistoryStats(0, None, None, None, None, None, None, None)
    async with sessions() as session:
        assert await history.stats(session) == empty
    await insert(sessions, [row(1)])
    async with sessions() as session:
        assert await history.stats(session, filter=HistoryFilter(status_code=500)) == empty


@pytest.mark.parametrize(
    "times",
    [[0.3], [0.3, 0.1], [0.2, 0.2], [0.1, 0.7, 0.4], [5.0, 1.0, 3.0, 2.0, 4.0], [0.5] * 7],
    ids=["n=1", "n=2", "n=2-equal", "n=3", "n=5", "n=7-equal"],
)
async def test_stats_of_few_requests(sessions: Sessions, times: list[float]) -> None:
    rows = [row(i, processing_time=t, image_width=None, image_height=None) for i, t in enumerate(times)]
    await insert(sessions, rows)
    async with sessions() as session:
        actual = await history.stats(session)
    assert_stats_equal(actual, expected_stats(rows), backend=backend_of(sessions))
    assert actual.average_image_width is None and actual.average_image_height is None


async def test_sqlite_stats_start_again_when_rows_vanish(tmp_path: Path, monkeypatch) -> None:
    """SQLite reads the count and the neighbours in separate statements: a short read retries."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'service.db'}"
    await anyio.to_thread.run_sync(migrate.upgrade, url)
    engine = create_engine(url)
    try:
        await _retried_stats(session_factory(engine), monkeypatch)
    finally:
        await engine.dispose()


async def _retried_stats(sessions: Sessions, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [row(i, processing_time=t) for i, t in enumerate([0.4, 0.1, 0.3, 0.2])]
    await insert(sessions, rows)
    real, calls = history._quantile, []

    async def flaky(*args: Any) -> Any:
        calls.append(args[-1])
        return history._SHORT if len(calls) == 2 else await real(*args)

    monkeypatch.setattr(history, "_quantile", flaky)
    async with sessions() as session:
        actual = await history.stats(session)
    assert len(calls) == 6  # three quantiles, twice
    assert_stats_equal(actual, expected_stats(rows), backend="sqlite")


async def test_postgres_stats_read_one_snapshot(sessions: Sessions, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows committed between the count and the quantile reads do not move the quantiles."""
    if backend_of(sessions) != "postgresql":
        pytest.skip("SQLite reads each statement in its own snapshot (and retries short reads)")
    rows = [row(i, processing_time=t) for i, t in enumerate([0.4, 0.1, 0.3, 0.2])]
    await insert(sessions, rows)
    real, racing_rows = history._quantile, [row(10 + i, processing_time=9.0) for i in range(4)]

    async def racing(*args: Any) -> Any:
        if racing_rows:  # another client's requests land after the count
            await insert(sessions, racing_rows)
            racing_rows.clear()
        return await real(*args)

    monkeypatch.setattr(history, "_quantile", racing)
    async with sessions.begin() as session:
        actual = await history.stats(session)
    assert not racing_rows
    assert_stats_equal(actual, expected_stats(rows), backend="postgresql")
