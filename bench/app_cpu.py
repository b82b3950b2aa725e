"""CPU per request of the application itself, in-process: no server, no sockets, no client.

Each variant (this checkout, and each `--ref GITREF` as a git worktree in bench/.work/) runs in
its own Python process: `create_app()` with its lifespan, rate limits on far above the load
(`harness.HIGH_RATE_LIMITS`), its own DATA_DIR; the ASGI app is called directly, one request at
a time, `--requests` times per load, and the process's CPU time (every thread: the event loop,
the worker threads, the SQLite writer) is divided by the count. Loads: GET /health, a 100 KB
and a 1 MB upload (bench/photos.py's photos in 64 KiB body chunks, as a socket delivers them),
the skin cache hit anonymous and logged in. The variants take turns, `--rounds` times, so that machine
noise hits each alike; figures are medians of the rounds.

Server CPU per request as bench/upload.py measures it also holds uvicorn and the kernel's socket
work, and on a machine shared with other jobs its rounds spread ±30 %; this one spreads a few
per cent, so it can show a change of 5 % that bench/upload.py cannot (it cannot replace it).

Run: .venv/bin/python bench/app_cpu.py [--ref GITREF] [--rounds 5] [--requests 300]
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
from tempfile import TemporaryDirectory

import harness as h
from photos import upload_image

LOADS = ("health", "upload", "hit", "hit_user", "upload_1m")
CHILD = r"""
import asyncio, json, os, sys, time
sys.path.insert(0, os.getcwd())
import uvloop
from app.main import create_app

BODY = open(os.environ["BENCH_BODY_FILE"], "rb").read()
BODY_1M = open(os.environ["BENCH_BODY_1M_FILE"], "rb").read()
MULTIPART = os.environ["BENCH_CONTENT_TYPE"].encode()
JSON = [(b"content-type", b"application/json")]


async def call(app, method, path, body=b"", headers=()):
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000),
             "headers": [(b"host", b"127.0.0.1"), (b"content-length", str(len(body)).encode()), *headers]}
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)] or [b""]
    messages = iter([{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                     for i, c in enumerate(chunks)])
    answer = {"body": b""}

    async def receive():
        message = next(messages, None)
        if message is None:
            await asyncio.Event().wait()  # no disconnect while the app answers
        return message

    async def send(message):
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return answer


async def main():
    app = create_app()
    requests, warm = int(os.environ["BENCH_REQUESTS"]), 20
    async with app.router.lifespan_context(app):
        upload = ("POST", "/api/v1/upload", BODY, [(b"content-type", MULTIPART)])
        image_id = json.loads((await call(app, *upload))["body"])["image_id"]
        hit = ("POST", "/api/v1/analyze", json.dumps({"image_id": image_id}).encode(), JSON)
        account = json.dumps({"username": "bench-user", "password": "bench-password-1"}).encode()
        await call(app, "POST", "/v1/register", account, JSON)
        token = json.loads((await call(app, "POST", "/v1/login", account, JSON))["body"])["access_token"]
        auth = [(b"authorization", f"Bearer {token}".encode())]
        mine = json.loads((await call(app, upload[0], upload[1], BODY, upload[3] + auth))["body"])["image_id"]
        hit_user = ("POST", "/api/v1/analyze", json.dumps({"image_id": mine}).encode(), JSON + auth)
        upload_1m = (*upload[:2], BODY_1M, upload[3])
        loads = {"health": ("GET", "/health", b"", []), "upload": upload, "upload_1m": upload_1m, "hit": hit,
                 "hit_user": hit_user}
        for name in os.environ["BENCH_LOADS"].split(","):
            for _ in range(warm):
                answer = await call(app, *loads[name])
            assert answer["status"] in (200, 201), answer
            started = time.process_time()
            for _ in range(requests):
                answer = await call(app, *loads[name])
            spent = time.process_time() - started
            assert answer["status"] in (200, 201), answer
            print(json.dumps({"load": name, "cpu_ms_per_request": spent * 1000 / requests}), flush=True)


uvloop.run(main())
"""


def measure(
    src: Path, work: Path, bodies: tuple[Path, Path], loads: list[str], requests: int
) -> dict[str, float]:
    """One process of the app from checkout `src`: CPU ms per request of each load."""
    data_dir = Path(work) / f"data-{len(list(work.iterdir()))}"
    data_dir.mkdir()
    env = {
        **os.environ,
        **h.HIGH_RATE_LIMITS,
        "DATA_DIR": str(data_dir),
        "API_KEYS": "",
        "MODEL_DIR": str(h.MODEL_DIR),
        "LOG_LEVEL": "WARNING",
        "BENCH_BODY_FILE": str(bodies[0]),
        "BENCH_BODY_1M_FILE": str(bodies[1]),
        "BENCH_CONTENT_TYPE": h.MULTIPART,
        "BENCH_REQUESTS": str(requests),
        "BENCH_LOADS": ",".join(loads),
    }
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=src, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{src}: the app failed ({done.returncode}):\n{done.stderr[-3000:]}")
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {row["load"]: row["cpu_ms_per_request"] for row in rows}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", action="append", default=[], help="also measure the app at this git ref")
    p.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    p.add_argument("--requests", type=int, default=300, help="requests per load and round (default 300)")
    p.add_argument("--only", default=",".join(LOADS), help=f"comma-separated subset of {','.join(LOADS)}")
    p.add_argument("--output", type=Path, default=h.BENCH_DIR / "app_cpu_results.json")
    args = p.parse_args()
    loads = args.only.split(",")
    if set(loads) - set(LOADS):
        p.error(f"--only: choose from {', '.join(LOADS)}")
    h.WORK_DIR.mkdir(exist_ok=True)
    bodies = (h.WORK_DIR / "upload-100k.body", h.WORK_DIR / "upload-1m.body")
    for path, size in zip(bodies, ("100k", "1m"), strict=True):
        path.write_bytes(h.multipart(upload_image(size)))
    with TemporaryDirectory(prefix="bench-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        variants = {"service": h.REPO_ROOT}
        for ref in args.ref:
            variants[f"@{ref}"] = Path(stack.enter_context(h.checkout(ref)))
        runs = {
            name: partial(measure, path, work, bodies, loads, args.requests)
            for name, path in variants.items()
        }
        got = h.alternate(
            args.rounds,
            runs,
            "ms CPU per request",
            show=lambda figures: "  ".join(f"{load} {ms:.3f}" for load, ms in figures.items()),
        )
    rows = []
    for name in variants:
        for load in loads:
            cpu = statistics.median(figures[load] for figures in got[name])
            row: dict = {"metric": f"app CPU, {load}", "variant": name, "CPU ms/req": cpu}
            if name != "service":
                row["service / this"] = statistics.median(f[load] for f in got["service"]) / cpu
            rows.append(row | {"runs": [figures[load] for figures in got[name]]})
    h.report(args.output, rows, vars(args))
    return 0


if __name__ == "__main__":
    h.run_cli(main)
