"""Load test: many users at once, and an open-loop burst, against the service (and `--ref`s).

Closed loop (`--users 64 256`, locust, bench/locustfile.py): each user repeats a mix for
`--seconds`: a cache-hit analysis (45%), an upload of a 100 KB photo (20%), a skin analysis
of a fresh upload (15%, a cache miss), a classification of a fresh photo (15%, a model run),
a metadata read (5%).
Open loop (`--burst N`): N classifications of distinct photos sent at `--rate` per second,
each with a `--timeout` client timeout, whatever the answers; then: how many were answered,
shed (503/429) or timed out, how long the server kept computing after the last client gave
up, and its RSS before, at the peak and after. Reports p50/p95/p99 per route, error and shed
rates; writes bench/load_results.json. Rate limits are off (one client address).

    .venv/bin/python bench/load.py                       # 64 and 256 users, a burst of 2,500
    .venv/bin/python bench/load.py --ref 88c95a0         # also the service as it was there
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory

import harness as h
import httpx
from photos import distinct_photos, upload_image

SHED = {429, 503}
LOCUSTFILE = h.BENCH_DIR / "locustfile.py"


def users(server: h.Server, count: int, seconds: float, env: dict[str, str], work: Path) -> dict:
    """A closed-loop locust run (bench/locustfile.py): per route p50/p95/p99, error and shed rates."""
    prefix = work / f"locust-{count}"
    cmd = [
        str(Path(h.sys.executable).with_name("locust")),
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--only-summary",
    ]
    cmd += [
        "-u",
        str(count),
        "-r",
        str(count),
        "-t",
        f"{seconds:g}s",
        "--host",
        server.url,
        "--csv",
        str(prefix),
    ]
    done = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
    if not Path(f"{prefix}_stats.csv").exists():
        raise RuntimeError(f"locust failed ({done.returncode}):\n{done.stderr[-3000:]}")
    failures: dict[str, dict[str, int]] = {}
    with open(f"{prefix}_failures.csv") as f:
        for row in csv.DictReader(f):
            kind = "shed" if "shed" in row["Error"] else "errors"
            failures.setdefault(row["Name"], {"shed": 0, "errors": 0})[kind] += int(row["Occurrences"])
    report = {}
    with open(f"{prefix}_stats.csv") as f:
        for row in csv.DictReader(f):
            total = int(row["Request Count"])
            if row["Name"] == "Aggregated" or not total:
                continue
            failed = failures.get(row["Name"], {"shed": 0, "errors": 0})
            report[row["Name"]] = {
                "requests": total,
                "p50_ms": float(row["50%"]),
                "p95_ms": float(row["95%"]),
                "p99_ms": float(row["99%"]),
                "shed_rate": failed["shed"] / total,
                "error_rate": failed["errors"] / total,
            }
    return report


async def burst(url: str, ids: list[str], rate: float, timeout: float) -> dict:
    """Open loop: one classification per 1/rate seconds, each abandoned after `timeout`."""
    outcomes: list[int] = []

    async def fire(c: httpx.AsyncClient, image_id: str) -> None:
        try:
            resp = await c.post("/api/v1/analyze", json={"image_id": image_id, "analyzer": "classify"})
            outcomes.append(resp.status_code)
        except httpx.TimeoutException:
            outcomes.append(-1)
        except httpx.HTTPError:
            outcomes.append(0)

    limits = httpx.Limits(max_connections=len(ids), max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as c:
        tasks, start = [], time.monotonic()
        for i, image_id in enumerate(ids):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            tasks.append(asyncio.create_task(fire(c, image_id)))
        await asyncio.gather(*tasks)
    return {
        "sent": len(ids),
        "answered": outcomes.count(200),
        "shed": sum(o in SHED for o in outcomes),
        "timed_out": outcomes.count(-1),
        "errors": sum(o == 0 or o >= 500 and o not in SHED for o in outcomes),
    }


def busy_after(pid: int, settle: float = 10.0) -> float:
    """Seconds of server CPU used in the `settle` seconds after the last client gave up."""
    before = h.cpu_seconds(pid)
    time.sleep(settle)
    return h.cpu_seconds(pid) - before


def rss_mib(pid: int) -> float:
    return (
        int(next(line for line in open(f"/proc/{pid}/status") if line.startswith("VmRSS")).split()[1]) / 1024
    )


def measure(server: h.Server, args: argparse.Namespace, work: Path) -> dict:
    photo_paths = distinct_photos(16)
    photos = [p.read_bytes() for p in photo_paths]
    small = upload_image("100k").read_bytes()
    with httpx.Client(base_url=server.url, timeout=60) as c:

        def upload(body: bytes) -> str:
            r = c.post("/api/v1/upload", files={"file": ("p.jpg", body, "image/jpeg")})
            if r.status_code != 201:
                raise RuntimeError(f"{server.name}: upload answered {r.status_code}: {r.text[:300]}")
            return str(r.json()["image_id"])

        hit_id = upload(small)
        c.post("/api/v1/analyze", json={"image_id": hit_id})
        ids = [upload(photos[i % 16] + i.to_bytes(4, "big")) for i in range(args.burst)]
    result: dict = {"rss_start_mib": rss_mib(server.pid)}
    env = {
        "BENCH_HIT_ID": hit_id,
        "BENCH_SMALL": str(upload_image("100k")),
        "BENCH_PHOTOS": str(photo_paths[0].parent),
    }
    for count in args.users:
        h.log(f"{server.name}: {count} users for {args.seconds:g} s (locust)")
        result[f"{count} users"] = users(server, count, args.seconds, env, work)
    h.log(f"{server.name}: burst of {args.burst} at {args.rate:g}/s, client timeout {args.timeout:g} s")
    peak = {"rss": rss_mib(server.pid)}
    result["burst"] = asyncio.run(burst(server.url, ids, args.rate, args.timeout))
    peak["rss"] = max(peak["rss"], rss_mib(server.pid))
    result["burst"]["server_cpu_s_in_10s_after"] = busy_after(server.pid)
    result |= {"rss_peak_mib": peak["rss"], "rss_after_mib": rss_mib(server.pid)}
    return result


def print_report(name: str, result: dict) -> None:
    print(f"\n== {name}: RSS {result['rss_start_mib']:.0f} MiB at start, {result['rss_after_mib']:.0f} after")
    for key, value in result.items():
        if key.endswith("users"):
            print(f"  {key}:")
            for route, r in value.items():
                print(
                    f"    {route:24} {r['requests']:6d} req  p50 {r['p50_ms']:7.1f}  p95 {r['p95_ms']:7.1f}"
                    f"  p99 {r['p99_ms']:7.1f} ms  shed {r['shed_rate']:.1%}  errors {r['error_rate']:.1%}"
                )
    print(f"  burst: {result['burst']}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--burst", type=int, default=2500)
    parser.add_argument("--rate", type=float, default=250)
    parser.add_argument("--timeout", type=float, default=10)
    parser.add_argument("--ref", action="append", default=[], help="also measure the service at this git ref")
    parser.add_argument("--output", type=Path, default=h.BENCH_DIR / "load_results.json")
    args = parser.parse_args()
    env = {  # one client address: its caps and the admission reserve are not what is measured
        "RATE_LIMITS_ENABLED": "false",
        "MAX_CONCURRENT_PER_ADDRESS": "4096",
        "MAX_CONNECTIONS_PER_ADDRESS": "4096",
        "ADMISSION_RESERVE_FRACTION": "0",
    }
    results = {}
    h.WORK_DIR.mkdir(exist_ok=True)
    with TemporaryDirectory(dir=h.WORK_DIR) as tmp:
        with ExitStack() as stack:
            variants = [("service", h.REPO_ROOT)]
            variants += [(f"service@{ref}", Path(stack.enter_context(h.checkout(ref)))) for ref in args.ref]
            for name, src in variants:
                with h.service(name, Path(tmp), src, **env) as server:
                    results[name] = measure(server, args, Path(tmp))
                print_report(name, results[name])
    h.report(args.output, [], vars(args) | {"output": str(args.output)}, load=results)
    return 0


if __name__ == "__main__":
    h.run_cli(main)
