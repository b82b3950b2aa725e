"""CPU of six hot paths in-process: an upload's multipart parse and validation, a logged-in
caller's resolution, a rate-limit hit, the request history's writes and a hop to a worker thread.

- `examine_image` (the structure walk and the header read) on bench/photos.py's 100 KB,
  1 MB and 5 MB photos, read-only mmaps as an upload gives them, with its two halves alone:
  `check_structure` (the JPEG walk; most of it the regex scan of the entropy-coded data) and
  `read_header` (`jpeg_header` for these JPEGs; Pillow before it existed).
- `MultipartStream` over a one-file form of each photo (a fresh boundary, as curl sends), in
  256 KB chunks as uvicorn hands them on, with a handler that drops the data: the parser alone;
  and over a part whose headers reach the limit (16 KiB) arriving a byte at a time (a cheap
  attack if the parse were quadratic in what it holds back).
- `RateLimits.hit` of one key in memory (limits far above the load), as every upload makes.
- `PrincipalResolver.resolve` of a bearer token already seen (a user in SQLite, views cached
  for USER_CACHE_SECONDS' default), as every logged-in request after the first does.
- `history.insert_many` of 500-row batches (the history writer's default batch) into SQLite,
  per row: the event loop's thread CPU (what every recorded request costs the loop) and the
  process's (the driver's thread too).
- `ThreadPool.run` of a function that does nothing, on uvloop: the hop alone, as every upload
  makes one (process CPU: the event loop's side and the worker's).

Each variant (this checkout, each `--ref GITREF` as a git worktree in bench/.work/) runs in
its own process, the variants taking turns `--rounds` times; figures are medians of the rounds
(µs of process CPU per call). A ref without `read_header` shows only the whole check.

Run: .venv/bin/python bench/hot_paths.py [--ref GITREF] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import harness as h
from photos import upload_image

SIZES = ("100k", "1m", "5m")
CHILD = r"""
import asyncio, json, mmap, os, sys, tempfile, time
from datetime import UTC, datetime, timedelta
sys.path.insert(0, os.getcwd())
from app.core.formats import sniff_format
from app.services.validation import checks


def per_call(f, n):
    f()
    started = time.process_time()
    for _ in range(n):
        f()
    return (time.process_time() - started) / n * 1e6


for size, path in json.loads(os.environ["BENCH_PHOTOS"]).items():
    n = {"100k": 1000, "1m": 200, "5m": 40}[size]
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        fmt = sniff_format(data[:32])
        row = {f"examine {size}": per_call(lambda: checks.examine_image(data, fmt, 50_000_000), n),
               f"structure {size}": per_call(lambda: checks.check_structure(data, fmt), n)}
        if hasattr(checks, "read_header"):
            row[f"header {size}"] = per_call(lambda: checks.read_header(data, fmt, 50_000_000, None), n)
        print(json.dumps(row), flush=True)
        del fmt


from app.services.multipart.parser import MultipartStream


class Drop:
    def begin_part(self, headers):
        pass

    def part_data(self, data):
        pass

    def end_part(self):
        pass


for size, path in json.loads(os.environ["BENCH_PHOTOS"]).items():
    with open(path, "rb") as fh:
        photo = fh.read()
    boundary = b"------------------------" + os.urandom(8).hex().encode()
    head = b'Content-Disposition: form-data; name="file"; filename="photo.jpg"\r\nContent-Type: image/jpeg'
    body = b"--" + boundary + b"\r\n" + head + b"\r\n\r\n" + photo + b"\r\n--" + boundary + b"--\r\n"
    chunks = [body[i : i + 256000] for i in range(0, len(body), 256000)]

    def parse():
        stream = MultipartStream(boundary, Drop(), 16384)
        for chunk in chunks:
            stream.write(chunk)
        stream.finalize()

    n = {"100k": 2000, "1m": 300, "5m": 60}[size]
    print(json.dumps({f"multipart {size}": per_call(parse, n)}), flush=True)

# One part's headers at the limit (16 KiB), sent a byte at a time: the parse must stay linear
# in what arrives (a write per byte), not search and copy all that is held back on each write.
head = b'--b\r\nContent-Disposition: form-data; name="a"\r\nX-Pad: ' + b"a" * 16000
padded = head + b"\r\n\r\nv\r\n--b--\r\n"


def bytewise():
    stream = MultipartStream(b"b", Drop(), 16384)
    for i in range(len(padded)):
        stream.write(padded[i : i + 1])
    stream.finalize()


print(json.dumps({"multipart 16 KB headers bytewise": per_call(bytewise, 5)}), flush=True)


async def rate_limit_hits():
    from app.core.config import Settings
    from app.services.rate_limit_settings import RateLimitSettings
    from app.services.rate_limits import RateLimits

    settings = Settings(_env_file=None, rate_limit_upload="100000000/minute")
    limits = RateLimits(RateLimitSettings.from_settings(settings))
    for _ in range(500):
        await limits.hit("upload", "a:127.0.0.1")
    started = time.process_time()
    for _ in range(20000):
        await limits.hit("upload", "a:127.0.0.1")
    print(json.dumps({"rate-limit hit": (time.process_time() - started) / 20000 * 1e6}), flush=True)

asyncio.run(rate_limit_hits())


async def resolve():
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
    from app.core.config import Settings
    from app.core.security import JwtConfig, issue_token
    from app.db import accounts
    from app.db.models import Base
    from app.services.accounts.principals import PrincipalResolver, UserDirectory
    from app.services.accounts.settings import AccessSettings

    engine = create_async_engine(f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.db")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions.begin() as session:
        user = await accounts.add_user(session, username="u", username_key="u", password_hash="x",
                                       full_name=None, is_admin=False, credits=0,
                                       now=datetime.now(UTC) - timedelta(days=1))
    settings = Settings(_env_file=None)
    jwt = JwtConfig(secret=b"k" * 64, issuer="bench", audience="bench")
    token = issue_token(jwt, subject=str(user.id), use="access", lifetime=timedelta(minutes=30))[0]
    resolver = PrincipalResolver(AccessSettings.from_settings(settings),
                                 jwt, UserDirectory(sessions, settings.user_cache_seconds))
    auth = f"Bearer {token}"
    for _ in range(200):
        await resolver.resolve(authorization=auth, api_key=None)
    started = time.process_time()
    for _ in range(20000):
        await resolver.resolve(authorization=auth, api_key=None)
    print(json.dumps({"resolve token": (time.process_time() - started) / 20000 * 1e6}), flush=True)
    await engine.dispose()

asyncio.run(resolve())


async def history_rows():
    from sqlalchemy.ext.asyncio import async_sessionmaker
    from app.db import history
    from app.db.engine import create_engine
    from app.db.models import Base

    engine = create_engine(f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/history.db")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    sessions = async_sessionmaker(engine)
    result = '{"image_id":"09192427-6474-4d24-a6d3-8ade08f9d44a","skin_type":"Sensitive","confidence":0.94}'

    def batch(n):
        return [{"request_type": "image", "route": "/api/v1/analyze", "principal": "anonymous",
                 "processing_time": 0.0004 + i * 1e-7, "input_data_size": 100000, "image_width": 640,
                 "image_height": 480, "status_code": 200, "result": result,
                 "created_at": datetime.now(UTC)} for i in range(n)]

    async def write(batches):
        for rows in batches:
            async with sessions.begin() as session:
                await history.insert_many(session, rows=rows)

    await write([batch(500) for _ in range(4)])
    batches = [batch(500) for _ in range(20)]
    loop_started, started = time.thread_time(), time.process_time()
    await write(batches)
    rows = 20 * 500
    print(json.dumps({"history row, event loop": (time.thread_time() - loop_started) / rows * 1e6,
                      "history row, process": (time.process_time() - started) / rows * 1e6}), flush=True)
    await engine.dispose()

asyncio.run(history_rows())


async def thread_hops():
    from app.core.threads import ThreadPool

    pool = ThreadPool("bench", 4)
    for _ in range(500):
        await pool.run(int)
    started = time.process_time()
    for _ in range(20000):
        await pool.run(int)
    print(json.dumps({"thread hop": (time.process_time() - started) / 20000 * 1e6}), flush=True)
    pool.shutdown()

import uvloop  # the servers' loop

uvloop.run(thread_hops())
"""


def measure(src: Path, photos: dict[str, str]) -> dict[str, float]:
    """One process of checkout `src`: µs CPU per call of each figure."""
    env = {**os.environ, "BENCH_PHOTOS": json.dumps(photos), "LOG_LEVEL": "WARNING"}
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=src, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{src}: failed ({done.returncode}):\n{done.stderr[-3000:]}")
    figures: dict[str, float] = {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            figures |= json.loads(line)
    return figures


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", action="append", default=[], help="also measure this git ref")
    p.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    p.add_argument("--output", type=Path, default=h.BENCH_DIR / "hot_paths_results.json")
    args = p.parse_args()
    photos = {size: str(upload_image(size)) for size in SIZES}
    with ExitStack() as stack:
        variants = {"service": h.REPO_ROOT}
        for ref in args.ref:
            variants[f"@{ref}"] = Path(stack.enter_context(h.checkout(ref)))
        runs = {name: partial(measure, src, photos) for name, src in variants.items()}
        got = h.alternate(
            args.rounds,
            runs,
            "µs CPU per call",
            show=lambda figures: "  ".join(f"{what} {us:.1f}" for what, us in figures.items()),
        )
    rows = []
    mine = got["service"]
    for name in variants:
        for what in got[name][0]:
            us = statistics.median(f[what] for f in got[name])
            row: dict = {"metric": f"CPU, {what}", "variant": name, "µs/call": us}
            if name != "service" and what in mine[0]:
                row["service / this"] = statistics.median(f[what] for f in mine) / us
            rows.append(row | {"runs": [f[what] for f in got[name]]})
    h.report(args.output, rows, vars(args))
    return 0


if __name__ == "__main__":
    h.run_cli(main)
