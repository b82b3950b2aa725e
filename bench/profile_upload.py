"""Where a 100 KB upload's server CPU goes: py-spy samples the service under wrk load.

Starts the service (rate limits on, far above the load: `harness.HIGH_RATE_LIMITS`), loads
it with wrk (POST /api/v1/upload of bench/photos.py's 100 KB JPEG, or another size), records
with py-spy (`--idle` off, all threads) for the load's duration, and prints the CPU per
request (from /proc) split by where each sample was (`BUCKETS`: the innermost frame that matches), turned
into microseconds per request (samples are of threads not idle, so disk waits count too). The collapsed
stacks go to bench/.work/profile-<size>.txt for a closer look (or a flame graph).

Run: .venv/bin/python bench/profile_upload.py [--size 100k] [--seconds 15]
py-spy must be able to read the server's memory (root, or ptrace_scope 0).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import threading
from collections import Counter
from pathlib import Path
from tempfile import TemporaryDirectory

import harness as h
import httpx
from photos import upload_image

# Where a sample goes: the first label (from the innermost frame outwards) whose substrings
# match a frame ("func (file:line)"). Time in C under a Python frame counts for that frame:
# `run (asyncio/runners.py)` as the innermost frame is uvloop's own C code (socket reads and
# writes, the loop itself).
BUCKETS: dict[str, tuple[str, ...]] = {
    "database (image row, idempotency)": ("sqlalchemy", "aiosqlite", "sqlite3", "app/db/"),
    "image check (header decode)": ("image_check.py", "png_check.py", "PIL/"),
    "storage publish (fsync, rename)": ("app/storage/", "_place (app/services/images/ingest.py"),
    "multipart parsing": ("multipart_parser.py", "python_multipart/"),
    "hash + temp file write": ("app/services/multipart/reader.py",),
    "ingest (rest)": ("app/services/images/ingest.py", "app/services/images/idempotency.py"),
    "authentication": ("app/services/accounts/principals.py", "principal_of"),
    "rate limits": ("app/services/rate_limits.py", "limits/"),
    "metrics": ("prometheus_client", "app/core/metrics.py"),
    "logging": ("logging/",),
    "thread pool hand-off": ("concurrent/futures/", "app/core/threads.py", "threading.py"),
    "request layers (app/api, starlette, fastapi)": ("app/api/", "starlette/", "fastapi/"),
    "uvicorn protocol": ("uvicorn/",),
    "event loop C code (uvloop: sockets, callbacks)": ("runners.py",),
}


def bucket(frames: list[str]) -> str:
    """The label of a sample's stack (innermost frame first)."""
    for frame in reversed(frames):
        for label, needles in BUCKETS.items():
            if any(needle in frame for needle in needles):
                return label
    return "other"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="100k", choices=("100k", "1m", "5m"))
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second (default 250)")
    p.add_argument("--gil", action="store_true", help="only samples of the thread holding the GIL")
    args = p.parse_args()
    spy = shutil.which("py-spy") or str(Path(h.sys.executable).parent / "py-spy")
    h.WORK_DIR.mkdir(exist_ok=True)
    body = h.WORK_DIR / f"upload-{args.size}.body"
    body.write_bytes(h.multipart(upload_image(args.size)))
    out = h.WORK_DIR / f"profile-{args.size}{'-gil' if args.gil else ''}.txt"
    with (
        TemporaryDirectory(prefix="bench-") as work,
        h.service("service", Path(work), **h.HIGH_RATE_LIMITS) as s,
    ):
        with httpx.Client(timeout=60) as client:
            for _ in range(20):  # warm: first-request imports, caches
                h.upload(client, s, body.read_bytes())
        result: dict = {}
        load = threading.Thread(
            target=lambda: result.update(
                h.wrk(s, "/api/v1/upload", args.seconds, args.connections, body, h.MULTIPART)
            )
        )
        load.start()
        cmd = [spy, "record", "--pid", str(s.pid), "--duration", str(int(args.seconds) - 1), "--rate"]
        cmd += [str(args.rate), "--format", "raw", "--nonblocking", "--threads", "--output", str(out)]
        cmd += ["--gil"] if args.gil else []
        subprocess.run(cmd, check=True, capture_output=True)
        load.join()
    stacks = Counter[str]()
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        stacks[stack] += int(count)
    total = sum(stacks.values())
    cpu_us = result["cpu_ms_per_request"] * 1000
    h.log(f"{result['rps']:.1f} req/s, {cpu_us:.0f} µs CPU per upload, {total} samples -> {out}")
    shares = Counter[str]()
    for stack, count in stacks.items():
        shares[bucket(stack.split(";"))] += count
    print(f"{'where':48} {'share':>6} {'µs/upload':>10}")
    for label, n in shares.most_common():
        print(f"{label:48} {n / total:6.1%} {cpu_us * n / total:10.0f}")
    return 0


if __name__ == "__main__":
    h.run_cli(main)
