"""Goodput of seed 000 `/v1/classify` under overload: completed classify flows per second.

Closed loop: `--users` clients (asyncio + httpx, one process, loopback) each POST
`/v1/classify` with a real photo (multipart upload: the whole flow, upload then
classification) again and again: by default the 100 KB photo of bench/photos.py, which
keeps the client's own cost small (it shares the machine); `--photos N` sends N distinct
0.3-1 MB JPEGs instead. A 503 or 429 is followed by a
pause of its `Retry-After` (x a jitter of 0.5-1, at most `--max-backoff` s), as a polite
client does. Each run warms up for `--warmup` s, then counts for `--seconds` s; requests in
flight at the end are abandoned (the client hangs up).

Reported per server and user count (medians of `--rounds` alternating rounds): goodput (200
answers per second), the share of 503/429 answers, p50/p95 latency of the successes, server
CPU per success. The service in this checkout and each `--ref` (a git worktree of that
commit) run side by side, in the same rounds; their stored images are deleted between rounds.

    .venv/bin/python bench/classify_goodput.py --ref main             # 64 and 256 users
    .venv/bin/python bench/classify_goodput.py --users 256 --seconds 30 --rounds 3 --ref main
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import ssl
import time
from contextlib import ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory

import harness as h
import httpx
from photos import distinct_photos, upload_image

SHED = {429, 503}


async def closed_loop(url: str, bodies: list[bytes], users: int, args: argparse.Namespace) -> dict:
    """`users` clients classify photos for `args.warmup + args.seconds`; the figures of the last
    `args.seconds`."""
    counter = itertools.count()
    # A client (connection pool) per user: one shared pool of hundreds of connections costs
    # the client more CPU per request than the server spends on a refusal. Made before the
    # clock starts, sharing one TLS context (unused on http://, but each costs ~10 ms to make).
    tls = ssl.create_default_context()
    clients = [httpx.AsyncClient(base_url=url, timeout=args.timeout, verify=tls) for _ in range(users)]
    start = time.monotonic()
    window = (start + args.warmup, start + args.warmup + args.seconds)
    ok_ms: list[float] = []
    tally = {"ok": 0, "shed": 0, "other": 0, "errors": 0}
    kinds: dict[str, int] = {}

    def counted() -> bool:
        return window[0] <= time.monotonic() <= window[1]

    async def user(seed: int) -> None:
        async with clients[seed] as c:
            await session(c, random.Random(seed))

    async def session(c: httpx.AsyncClient, rng: random.Random) -> None:
        while time.monotonic() < window[1]:
            body = bodies[next(counter) % len(bodies)]
            sent = time.perf_counter()
            try:
                r = await c.post("/v1/classify", content=body, headers={"Content-Type": h.MULTIPART})
            except httpx.HTTPError as exc:
                if counted():
                    tally["errors"] += 1
                    kinds[type(exc).__name__] = kinds.get(type(exc).__name__, 0) + 1
                continue
            ms = (time.perf_counter() - sent) * 1000
            if r.status_code == 200:
                if counted():
                    tally["ok"] += 1
                    ok_ms.append(ms)
            elif r.status_code in SHED:
                tally["shed"] += counted()
                retry = float(r.headers.get("retry-after", "1") or 1)
                await asyncio.sleep(min(retry, args.max_backoff) * rng.uniform(0.5, 1.0))
            else:
                tally["other"] += counted()

    tasks = [asyncio.create_task(user(i)) for i in range(users)]
    await asyncio.sleep(window[1] - time.monotonic())
    for task in tasks:
        task.cancel()  # abandon what is in flight: the server sees the client hang up
    await asyncio.gather(*tasks, return_exceptions=True)
    answered = tally["ok"] + tally["shed"] + tally["other"]
    return {
        **tally,
        "error_kinds": kinds,
        "rps": tally["ok"] / args.seconds,
        "shed_share": tally["shed"] / answered if answered else 0.0,
        "p50_ms": h.percentile(ok_ms, 50) if ok_ms else float("nan"),
        "p95_ms": h.percentile(ok_ms, 95) if ok_ms else float("nan"),
    }


def measure(server: h.Server, bodies: list[bytes], users: int, args: argparse.Namespace) -> dict:
    """One closed-loop run, with the server's CPU over the counted window."""

    async def run() -> dict:
        loop_task = asyncio.create_task(closed_loop(server.url, bodies, users, args))
        await asyncio.sleep(args.warmup)
        cpu = h.cpu_seconds(server.pid)
        result = await loop_task
        result["cpu_ms_per_request"] = (h.cpu_seconds(server.pid) - cpu) * 1000 / max(1, result["ok"])
        return result

    result = asyncio.run(run())
    time.sleep(args.settle)  # let abandoned work drain before the next run
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--settle", type=float, default=3, help="pause after each run (s)")
    parser.add_argument("--timeout", type=float, default=30, help="client timeout per request (s)")
    parser.add_argument("--max-backoff", type=float, default=5)
    parser.add_argument(
        "--photos", type=int, default=0, help="N distinct 0.3-1 MB photos (0: the 100 KB one)"
    )
    parser.add_argument("--ref", action="append", default=[], help="also measure the service at this git ref")
    parser.add_argument("--output", type=Path, default=h.BENCH_DIR / "classify_goodput_results.json")
    args = parser.parse_args()
    photos = distinct_photos(args.photos) if args.photos else [upload_image("100k")]
    bodies = [h.multipart(p) for p in photos]
    # Rate limits off and no per-address cap: one client address stands for many users.
    env = {"RATE_LIMITS_ENABLED": "false", "MAX_CONCURRENT_PER_ADDRESS": "4096"}
    h.WORK_DIR.mkdir(exist_ok=True)
    with TemporaryDirectory(dir=h.WORK_DIR) as tmp, ExitStack() as stack:
        variants = [("service", h.REPO_ROOT)]
        variants += [(f"service@{ref}", Path(stack.enter_context(h.checkout(ref)))) for ref in args.ref]
        servers = {
            name: stack.enter_context(h.service(name, Path(tmp), src, **env)) for name, src in variants
        }
        runs = {
            f"{name} {users}u": (lambda s=server, u=users: measure(s, bodies, u, args))
            for users in args.users
            for name, server in servers.items()
        }

        def empty() -> None:
            for server in servers.values():
                server.empty()

        out = h.alternate(
            args.rounds, runs, "classify goodput (completed /v1/classify flows per second)", empty
        )
    rows = []
    for users in args.users:
        for name in servers:
            r = out[f"{name} {users}u"]
            ref_rps = h.med(out[f"{next(iter(servers))} {users}u"], "rps")
            row = {
                "server": name,
                "users": users,
                "goodput_per_s": h.med(r, "rps"),
                "shed_share": h.med(r, "shed_share"),
                "ok_p50_ms": h.med(r, "p50_ms"),
                "ok_p95_ms": h.med(r, "p95_ms"),
                "cpu_ms_per_success": h.med(r, "cpu_ms_per_request"),
                "errors": sum(x["errors"] + x["other"] for x in r),
                "runs": r,
            }
            if name != next(iter(servers)):
                row["service_goodput_ratio"] = (
                    ref_rps / row["goodput_per_s"] if row["goodput_per_s"] else float("inf")
                )
            rows.append(row)
    refs = {f"service@{ref}": h.git("rev-parse", ref) for ref in args.ref}
    h.report(args.output, rows, vars(args) | {"output": str(args.output), "refs": refs})
    return 0


if __name__ == "__main__":
    h.run_cli(main)
