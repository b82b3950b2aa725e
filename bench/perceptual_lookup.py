"""The near-duplicate lookup at a million images, on PostgreSQL and SQLite: latency and plan.

Fills the `images` table (the schema of the migrations, in a fresh PostgreSQL database created
and dropped here, and a fresh SQLite file) with `--rows` rows of uniformly random PDQ hashes
owned by `--owners` owners, plus `--near` near-duplicate rows (a random row's hash with 1-31
bits flipped, the same owner); loaded by COPY (PostgreSQL) or executemany (SQLite) with the band
indexes dropped, then built again from the models' definitions (the migrations' too) and
ANALYZEd. Then it runs the lookup the service runs (`app.db.images.near_duplicates`, through
its SQLAlchemy engine, then the full Hamming distance check of `PerceptualReuse.candidates`)
for `--queries` hashes: half near a stored row (k = 1..31 bits off; recall is how many of
those within the threshold are found), half random (nothing near). Reported per back-end,
threshold (15: one probe per band; 31: 17 per band) and scope (the owner's images, or anyone's):
p50 / p99 / max milliseconds per lookup, candidate rows per lookup, recall; and the
EXPLAIN (ANALYZE, BUFFERS) plan (SQLite: EXPLAIN QUERY PLAN) of one lookup, which must read
the band indexes, never the whole table.

    TEST_POSTGRES_URL=postgresql+asyncpg://postgres@127.0.0.1:5433/postgres \\
        .venv/bin/python bench/perceptual_lookup.py              # --rows 1000000 --backends postgres,sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateIndex

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.db import migrate  # noqa: E402
from app.db.engine import create_engine, session_factory  # noqa: E402
from app.db.images import near_duplicates, near_duplicates_query  # noqa: E402
from app.db.models import PERCEPTUAL_BANDS, Image  # noqa: E402
from app.services.images.perceptual import bands, distance, probe_radius, probes  # noqa: E402
from bench import harness as h  # noqa: E402

DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5433/postgres"
CHUNK = 50_000
COLUMNS = [column.name for column in Image.__table__.columns]
BAND_INDEXES = [index for index in Image.__table__.indexes if index.name.startswith("ix_images_pdq_")]


def hex_of(row: np.ndarray) -> str:
    return row.astype(">u2").tobytes().hex()


def flip(row: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """`row` (16 bands of 16 bits) with `k` distinct random bits flipped."""
    out = row.copy()
    for bit in rng.choice(256, size=k, replace=False):
        out[bit // 16] ^= np.uint16(1 << (15 - bit % 16))
    return out


class Dataset:
    """The rows to load (generated chunk by chunk) and the lookups to run."""

    def __init__(self, rows: int, owners: int, near: int, queries: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.rows, self.owners, self.seed = rows, owners, seed
        self.bands = rng.integers(0, 1 << 16, size=(rows, PERCEPTUAL_BANDS), dtype=np.uint16)
        self.owner_of = rng.integers(0, owners, size=rows)
        # near-duplicate rows: copies of random rows, 1-31 bits off, the same owner
        sources = rng.integers(0, rows, size=near)
        self.near_bands = np.stack([flip(self.bands[i], 1 + j % 31, rng) for j, i in enumerate(sources)])
        self.near_owner = self.owner_of[sources]
        # lookups: half near a stored row (k = 1..31 bits off), half random
        self.lookups: list[tuple[str, str, int | None]] = []  # (hash, owner, k or None)
        for j, i in enumerate(rng.integers(0, rows, size=queries // 2)):
            k = 1 + j % 31
            self.lookups.append((hex_of(flip(self.bands[i], k, rng)), f"user:{self.owner_of[i]}", k))
        for _ in range(queries - queries // 2):
            random = rng.integers(0, 1 << 16, size=PERCEPTUAL_BANDS, dtype=np.uint16)
            self.lookups.append((hex_of(random), f"user:{rng.integers(0, owners)}", None))

    def records(self) -> Iterator[list[tuple[Any, ...]]]:
        """Every row as a tuple of `COLUMNS`, in chunks of `CHUNK`."""
        all_bands = np.concatenate([self.bands, self.near_bands])
        all_owners = np.concatenate([self.owner_of, self.near_owner])
        base = 1_760_000_000.0
        for start in range(0, len(all_bands), CHUNK):
            chunk = []
            for i in range(start, min(start + CHUNK, len(all_bands))):
                row = all_bands[i]
                values = {
                    "image_id": str(uuid.uuid4()),
                    "owner": f"user:{all_owners[i]}",
                    "filename": None,
                    "content_type": "image/jpeg",
                    "format": "jpeg",
                    "size_bytes": 100_000,
                    "width": 512,
                    "height": 512,
                    "sha256": "0" * 64,
                    "created_at": "2026-12-05T00:00:00Z",
                    "created_ts": base + i,
                    "upright_width": 512,
                    "upright_height": 512,
                    "trailer": None,
                    "perceptual_hash": hex_of(row),
                    **{f"pdq_{b}": int(row[b]) for b in range(PERCEPTUAL_BANDS)},
                }
                chunk.append(tuple(values[c] for c in COLUMNS))
            yield chunk


async def load_postgres(url: str, data: Dataset) -> float:
    import asyncpg

    conn = await asyncpg.connect(h_url(url))
    started = time.perf_counter()
    try:
        for index in BAND_INDEXES:
            await conn.execute(f"DROP INDEX {index.name}")
        for chunk in data.records():
            await conn.copy_records_to_table("images", records=chunk, columns=COLUMNS)
        from sqlalchemy.dialects import postgresql

        for index in BAND_INDEXES:
            await conn.execute(str(CreateIndex(index).compile(dialect=postgresql.dialect())))
        await conn.execute("ANALYZE images")
    finally:
        await conn.close()
    return time.perf_counter() - started


def load_sqlite(path: Path, data: Dataset) -> float:
    from sqlalchemy.dialects import sqlite

    started = time.perf_counter()
    with sqlite3.connect(path) as db:
        for index in BAND_INDEXES:
            db.execute(f"DROP INDEX {index.name}")
        sql = f"INSERT INTO images ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        for chunk in data.records():
            db.executemany(sql, chunk)
        for index in BAND_INDEXES:
            db.execute(str(CreateIndex(index).compile(dialect=sqlite.dialect())))
        db.execute("ANALYZE")
    return time.perf_counter() - started


async def _admin(server: str, statement: str) -> None:
    """Run `statement` (CREATE/DROP DATABASE) outside a transaction on the server's database."""
    import asyncpg

    conn = await asyncpg.connect(h_url(server))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def h_url(url: str) -> str:
    """A SQLAlchemy asyncpg URL as asyncpg's own."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def measure(url: str, data: Dataset, threshold: int, any_owner: bool) -> dict[str, Any]:
    """Lookups as the service runs them (query, then the distance check), timed one by one."""
    engine = create_engine(url)
    sessions = session_factory(engine)
    radius = probe_radius(threshold)
    times, candidates, near_total, near_found = [], [], 0, 0
    try:
        for run in range(2):  # the first pass warms the caches; the second is measured
            for own, owner, k in data.lookups:
                started = time.perf_counter()
                async with sessions() as session:
                    rows = await near_duplicates(
                        session,
                        probes=[probes(band, radius) for band in bands(own)],
                        owner=None if any_owner else owner,
                        exclude="",
                    )
                found = [
                    r for r in rows if r.perceptual_hash and distance(own, r.perceptual_hash) <= threshold
                ]
                elapsed = time.perf_counter() - started
                if run == 1:
                    times.append(elapsed * 1000)
                    candidates.append(len(rows))
                    if k is not None and k <= threshold:
                        near_total += 1
                        near_found += bool(found)
    finally:
        await engine.dispose()
    return {
        "threshold": threshold,
        "scope": "any" if any_owner else "owner",
        "p50_ms": h.percentile(times, 50),
        "p99_ms": h.percentile(times, 99),
        "max_ms": max(times),
        "candidates_median": float(statistics.median(candidates)),
        "recall": f"{near_found}/{near_total}",
    }


async def plan(url: str, data: Dataset, threshold: int, postgres: bool) -> str:
    """The plan of one owner-scoped lookup (its literal SQL, as the service's engine sends it)."""
    engine = create_engine(url)
    own, owner, _ = data.lookups[0]
    radius = probe_radius(threshold)
    statement = near_duplicates_query(
        probes=[probes(band, radius) for band in bands(own)], owner=owner, exclude=""
    )
    sql = str(statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if postgres else "EXPLAIN QUERY PLAN "
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text(prefix + sql))).all()
    finally:
        await engine.dispose()
    return "\n".join(str(row[-1]) for row in rows)


def plan_ok(text_plan: str, postgres: bool) -> bool:
    """The plan reads indexes (the band indexes; PostgreSQL may take the owner's index instead
    for an owner with few images, its cost-based choice) and never scans the table."""
    if postgres:
        return "Seq Scan" not in text_plan and (
            "ix_images_pdq_" in text_plan or "ix_images_owner" in text_plan
        )
    return all(line.find("SCAN images") < 0 or "INDEX" in line for line in text_plan.splitlines()) and (
        "ix_images_pdq_" in text_plan
    )


async def run_backend(backend: str, data: Dataset, args: argparse.Namespace) -> tuple[list[dict], dict]:
    postgres = backend == "postgres"
    if postgres:
        server = args.pg_url
        name = f"bench_pdq_{uuid.uuid4().hex[:12]}"
        await _admin(server, f'CREATE DATABASE "{name}"')
        url = make_url(server).set(database=name).render_as_string(hide_password=False)
        workdir = None
    else:
        workdir = tempfile.TemporaryDirectory(prefix="pdq-lookup-", dir=args.workdir)
        url = f"sqlite+aiosqlite:///{workdir.name}/service.db"
    try:
        await asyncio.to_thread(migrate.upgrade, url)
        h.log(f"{backend}: loading {data.rows + len(data.near_bands):,} rows")
        if postgres:
            load_s = await load_postgres(url, data)
        else:
            load_s = await asyncio.to_thread(load_sqlite, Path(workdir.name) / "service.db", data)  # type: ignore[union-attr]
        h.log(f"{backend}: loaded and indexed in {load_s:.0f} s")
        rows = []
        for threshold in (15, 31):
            for any_owner in (False, True):
                row = {"backend": backend, **await measure(url, data, threshold, any_owner)}
                h.log(f"  {row}")
                rows.append(row)
        plans = {}
        for threshold in (15, 31):
            text_plan = await plan(url, data, threshold, postgres)
            plans[f"{backend} distance {threshold}"] = {"plan": text_plan, "ok": plan_ok(text_plan, postgres)}
        return rows, {"load_seconds": load_s, "plans": plans}
    finally:
        if postgres:
            await _admin(args.pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        elif workdir is not None:
            workdir.cleanup()


async def main_async(args: argparse.Namespace) -> int:
    data = Dataset(args.rows, args.owners, args.near, args.queries, args.seed)
    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    for backend in args.backends.split(","):
        got, info = await run_backend(backend, data, args)
        rows += got
        extra[backend] = info
    for info in extra.values():
        for label, entry in info["plans"].items():
            print(f"\n{label}: {'PASS (band indexes, no table scan)' if entry['ok'] else 'FAIL'}")
            print(entry["plan"])
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "pg_url", "workdir")}
    h.report(args.out, rows, settings, backends=extra)
    ok = all(entry["ok"] for info in extra.values() for entry in info["plans"].values())
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--owners", type=int, default=1_000)
    parser.add_argument("--near", type=int, default=2_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--backends", default="postgres,sqlite")
    parser.add_argument("--pg-url", default=os.environ.get("TEST_POSTGRES_URL", DEFAULT_PG))
    parser.add_argument("--workdir", default=None, help="where the SQLite file goes (default: the temp dir)")
    parser.add_argument("--out", type=Path, default=h.BENCH_DIR / "perceptual_lookup_results.json")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    h.run_cli(main)
