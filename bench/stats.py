"""Benchmark of `app.db.history.stats` (seed 003's GET /stats) over a million history rows.

Fills `request_history` with `--rows` random requests (SQLite: `history.insert_many` in batches,
into a temp file; PostgreSQL: COPY into a fresh database on the server of `--postgres` or
TEST_POSTGRES_URL, dropped afterwards), then times `stats()` unfiltered and with filters,
`--repeat` times each, and prints the p50 against the targets: < 1 s on SQLite, < 0.3 s on
PostgreSQL. Exits 1 when a target is missed.

    .venv/bin/python bench/stats.py [--rows 1000000] [--repeat 7] [--postgres URL] [--no-sqlite]
                                    [--stats-index]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.db import history, migrate  # noqa: E402
from app.db.engine import create_engine, session_factory  # noqa: E402
from app.db.history import HistoryFilter  # noqa: E402

TARGETS = {"sqlite": 1.0, "postgresql": 0.3}  # seconds, p50 of stats()
# --stats-index was the proposal of ix_request_history_stats, now part of the schema.
STATS_INDEX: tuple[str, ...] = ()
NOW = datetime(2026, 11, 29, tzinfo=UTC)
FILTERS = {
    "all": HistoryFilter(),
    "request_type=image": HistoryFilter(request_type="image"),
    "last 7 days": HistoryFilter(since=NOW - timedelta(days=7)),
}
COLUMNS = (
    "request_type", "route", "principal", "processing_time", "input_data_size", "image_width",
    "image_height", "status_code", "result", "error_message", "created_at",
)  # fmt: skip


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_rows(n: int, seed: int = 7) -> list[tuple[Any, ...]]:
    """n random requests over 30 days: half images, a quarter each JSON and URL; JSON has no image size."""
    rng = np.random.default_rng(seed)
    kinds = rng.choice(np.array(["image", "image", "json", "url"]), n)
    times = np.round(rng.lognormal(-1.5, 1.0, n), 6)
    sizes = rng.integers(100, 5_000_000, n)
    widths, heights = rng.integers(16, 4000, n), rng.integers(16, 4000, n)
    codes = rng.choice(np.array([200, 200, 200, 200, 400, 403]), n)
    ages = np.sort(rng.integers(0, 30 * 86400 * 1000, n))[::-1]
    rows = []
    for i in range(n):
        image = kinds[i] != "json"
        rows.append(
            (
                str(kinds[i]), "/forward", f"user:{i % 1000}", float(times[i]), int(sizes[i]),
                int(widths[i]) if image else None, int(heights[i]) if image else None, int(codes[i]),
                '{"top_class": "espresso"}', None, NOW - timedelta(milliseconds=int(ages[i])),
            )
        )  # fmt: skip
    return rows


async def fill_sqlite(url: str, rows: list[tuple[Any, ...]], batch: int = 20_000) -> None:
    engine = create_engine(url)
    try:
        sessions = session_factory(engine)
        for start in range(0, len(rows), batch):
            chunk = [dict(zip(COLUMNS, r, strict=True)) for r in rows[start : start + batch]]
            async with sessions.begin() as session:
                await history.insert_many(session, rows=chunk)
    finally:
        await engine.dispose()


async def fill_postgres(url: str, rows: list[tuple[Any, ...]]) -> None:
    connection = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
    try:
        await connection.copy_records_to_table("request_history", records=rows, columns=list(COLUMNS))
        # What autovacuum does after a load: statistics, and the visibility map for index-only scans.
        await connection.execute("VACUUM (FREEZE, ANALYZE) request_history")
    finally:
        await connection.close()


async def time_stats(url: str, repeat: int) -> dict[str, tuple[float, history.HistoryStats]]:
    """Each filter's p50 seconds over `repeat` runs (one warm-up first), and its result."""
    engine = create_engine(url)
    results = {}
    try:
        sessions = session_factory(engine)
        for name, filter_ in FILTERS.items():
            timings = []
            for attempt in range(repeat + 1):
                async with sessions() as session:
                    started = time.perf_counter()
                    result = await history.stats(session, filter=filter_)
                    if attempt:
                        timings.append(time.perf_counter() - started)
            results[name] = (statistics.median(timings), result)
    finally:
        await engine.dispose()
    return results


async def add_stats_index(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            for statement in STATS_INDEX:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


async def run_backend(backend: str, url: str, rows: list[tuple[Any, ...]], args: argparse.Namespace) -> bool:
    await asyncio.to_thread(migrate.upgrade, url)
    if args.stats_index:
        await add_stats_index(url)
    started = time.perf_counter()
    await (fill_sqlite(url, rows) if backend == "sqlite" else fill_postgres(url, rows))
    took = time.perf_counter() - started
    how = "history.insert_many" if backend == "sqlite" else "COPY"
    log(f"{backend}: {len(rows):,} rows in {took:.1f} s ({len(rows) / took:,.0f} rows/s, {how})")
    ok = True
    for name, (p50, result) in (await time_stats(url, args.repeat)).items():
        met = p50 < TARGETS[backend]
        ok &= met
        label = backend + (" +index" if args.stats_index else "")
        target, verdict = TARGETS[backend] * 1000, "ok" if met else "MISSED"
        print(
            f"{label:<17} {name:<19} stats() p50 {p50 * 1000:7.1f} ms  target < {target:.0f} ms  {verdict:<6}"
            f"  n={result.total_requests:,} median={result.median_processing_time:.4f}"
            f" p99={result.percentile_99_processing_time:.4f}  load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    return ok


async def with_postgres_database(server: str, rows: list[tuple[Any, ...]], args: argparse.Namespace) -> bool:
    admin_dsn = make_url(server).set(drivername="postgresql").render_as_string(False)
    name = f"bench_stats_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(server).set(database=name).render_as_string(False)
        engine = create_engine(url)
        async with engine.connect() as connection:
            version = (await connection.execute(text("SHOW server_version"))).scalar_one()
        await engine.dispose()
        log(f"postgresql: server {version}")
        return await run_backend("postgresql", url, rows, args)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def main_async(args: argparse.Namespace) -> int:
    log(f"generating {args.rows:,} rows ({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})")
    rows = make_rows(args.rows)
    ok = True
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory(prefix="bench-stats-") as tmp:
            ok &= await run_backend("sqlite", f"sqlite+aiosqlite:///{tmp}/service.db", rows, args)
    server = args.postgres or os.environ.get("TEST_POSTGRES_URL")
    if server:
        ok &= await with_postgres_database(server, rows, args)
    else:
        log("postgresql: skipped (give --postgres URL or set TEST_POSTGRES_URL)")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per filter (after one warm-up)")
    parser.add_argument("--postgres", help="server URL, e.g. postgresql+asyncpg://postgres@127.0.0.1:5433/x")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--stats-index", action="store_true", help="add the proposed stats index")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
