"""Memory after a burst: does the service's RSS return near its warm figure?

Each variant is one server (the service with extra environment, `--variant NAME:K=V,K=V`,
or the service at a git ref, `--ref`). Warm-up: `--warm` classifications (`/v1/classify`
uploads of distinct photos) and `--warm-uploads` plain 100 KB uploads, then `--settle`
seconds idle: the warm RSS. Burst: `--burst` /v1/classify calls of distinct 0.3-1 MB photos,
`--concurrency` at a time, each abandoned after `--timeout` seconds (a short one leaves the
server working after its clients gave up, as in issue 14), plus as many 100 KB uploads
alongside (`--uploads`); then RSS
every second for `--after` seconds. Target (issue 14): RSS 30 s after the burst within 10 %
of the warm figure. Writes bench/memory_results.json.

    .venv/bin/python bench/memory.py
    .venv/bin/python bench/memory.py --ref 0807632 --variant arena2:MALLOC_ARENA_MAX=2
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory

import harness as h
import httpx
from photos import distinct_photos, upload_image

TARGET = 1.10


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("VmRSS")).split()[1]) / 1024


async def fire(url: str, path: str, bodies: list[bytes], concurrency: int, timeout: float = 120) -> dict:
    """POST each body as a multipart `file`, `concurrency` at a time, each abandoned after
    `timeout` seconds: status counts."""
    statuses: dict[str, int] = {}
    queue = list(reversed(bodies))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:

        async def worker() -> None:
            while queue:
                body = queue.pop()
                try:
                    r = await client.post(path, files={"file": ("p.jpg", body, "image/jpeg")})
                    key = str(r.status_code)
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                statuses[key] = statuses.get(key, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def distinct(photos: list[bytes], start: int, count: int) -> list[bytes]:
    """`count` distinct bodies (a photo and 4 bytes past its end, as bench/load.py)."""
    return [photos[i % len(photos)] + i.to_bytes(4, "big") for i in range(start, start + count)]


def stock_analyses(s: h.Server, count: int) -> None:
    """`count` result files of other images in the analysis folder (issue 14's data dir had
    32,000): the deletes of shed classifications then take long, past the last request."""
    folder = s.store.parent / "analysis"
    folder.mkdir(exist_ok=True)
    for _ in range(count):
        (folder / f"{uuid.uuid4()}.classify.json").write_text('{"predictions": []}')


def measure(s: h.Server, args: argparse.Namespace, photos: list[bytes], small: bytes) -> dict:
    stock_analyses(s, args.analysis_files)
    warm_calls = asyncio.run(fire(s.url, "/v1/classify", distinct(photos, 0, args.warm), 4))
    asyncio.run(fire(s.url, "/api/v1/upload", [small] * args.warm_uploads, 4))
    time.sleep(args.settle)
    warm = rss_mib(s.pid)
    h.log(f"  {s.name}: warm {warm:.0f} MiB ({warm_calls})")
    peak = warm
    done = False

    async def burst() -> dict:
        nonlocal done
        bodies = distinct(photos, args.warm, args.burst)
        calls = fire(s.url, "/v1/classify", bodies, args.concurrency, args.timeout)
        uploads = fire(s.url, "/api/v1/upload", [small] * args.uploads, args.concurrency, args.timeout)
        out = await asyncio.gather(calls, uploads)
        done = True
        return {"classify": out[0], "uploads": out[1]}

    async def sample() -> None:
        nonlocal peak
        while not done:
            peak = max(peak, rss_mib(s.pid))
            await asyncio.sleep(0.5)

    async def both() -> dict:
        result, _ = await asyncio.gather(burst(), sample())
        return result

    cpu = h.cpu_seconds(s.pid)
    started = time.monotonic()
    statuses = asyncio.run(both())
    burst_seconds = time.monotonic() - started
    after: dict[int, float] = {}
    for second in range(1, args.after + 1):
        time.sleep(max(0.0, started + burst_seconds + second - time.monotonic()))
        after[second] = rss_mib(s.pid)
    at30 = after.get(30, after[max(after)])
    h.log(f"  {s.name}: burst {statuses} in {burst_seconds:.0f} s; peak {peak:.0f} MiB, +30 s {at30:.0f} MiB")
    return {
        "variant": s.name,
        "warm MiB": warm,
        "peak MiB": peak,
        "+10 s MiB": after.get(10),
        "+30 s MiB": at30,
        f"+{args.after} s MiB": after[args.after],
        "ratio +30 s": at30 / warm,
        "result": h.verdict(at30 / warm, lambda x: x <= TARGET),
        "burst s": round(burst_seconds, 1),
        "CPU s": round(h.cpu_seconds(s.pid) - cpu, 1),
        "runs": {"burst": statuses, "rss_after": after},
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", action="append", default=[], help="also measure the service at this git ref")
    p.add_argument("--variant", action="append", default=[], help="NAME:K=V,K=V: the service with this env")
    p.add_argument("--warm", type=int, default=40, help="classifications to warm up (default 40)")
    p.add_argument("--warm-uploads", type=int, default=40, help="100 KB uploads to warm up (default 40)")
    p.add_argument("--settle", type=float, default=8.0, help="idle seconds before the warm RSS (default 8)")
    p.add_argument("--burst", type=int, default=1000, help="/v1/classify calls in the burst (default 1000)")
    p.add_argument("--uploads", type=int, default=1000, help="100 KB uploads alongside (default 1000)")
    p.add_argument("--concurrency", type=int, default=128, help="calls at once, per kind (default 128)")
    p.add_argument("--timeout", type=float, default=120, help="client timeout per call, s (default 120)")
    p.add_argument("--analysis-files", type=int, default=0, help="other images' results stocked first")
    p.add_argument("--after", type=int, default=40, help="seconds of RSS samples after (default 40)")
    p.add_argument("--output", type=Path, default=h.BENCH_DIR / "memory_results.json")
    args = p.parse_args()
    photos = [path.read_bytes() for path in distinct_photos(16)]
    small = upload_image("100k").read_bytes()
    rows = []
    with ExitStack() as stack:
        work = Path(stack.enter_context(TemporaryDirectory(prefix="bench-")))
        plans: list[tuple[str, Path, dict[str, str]]] = [("service", h.REPO_ROOT, {})]
        for spec in args.variant:
            name, _, pairs = spec.partition(":")
            env = dict(pair.split("=", 1) for pair in pairs.split(",") if pair)
            plans.append((name, h.REPO_ROOT, env))
        for ref in args.ref:
            plans.append((f"@{ref}", Path(stack.enter_context(h.checkout(ref))), {}))
        for name, src, env in plans:  # one at a time: each has the machine to itself
            with h.service(name, work, src, **env) as s:
                rows.append(measure(s, args, photos, small))
    h.report(args.output, rows, vars(args) | {"output": str(args.output)})
    return 0


if __name__ == "__main__":
    h.run_cli(main)
