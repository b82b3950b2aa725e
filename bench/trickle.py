"""Slow-client attacks against the service, loopback only: trickled bodies and idle heads.

Trickle (issue 14): `--connections` uploads (1,000) from `--addresses` loopback addresses
(127.0.0.2-127.0.0.6, client sockets bound to them; a process of their own) each send a
request head and the start of a 100 KB multipart body, then one byte every `--interval`
seconds (10), for `--seconds` (40); one that is answered (408, 503) comes back after
`--reconnect` seconds (1, the Retry-After the service sends; -1: never), so the pressure
lasts. Meanwhile a well-behaved client on 127.0.0.1 uploads 100 KB photos
(`--good-concurrency` at a time). Reported: p50/p95 of the good uploads without the attack,
during it and after it (same run, same server), their failures, /health latency, what the
trickled requests got (408, 503, no answer), and the temp files left once the attack is over.
Target: good-upload p95 during the attack within 2x the p95 without it.

Idle heads: `--idle-heads` connections (500, spread over the same addresses) send part of a
request head, then nothing: reported how long each stayed open (the service closes them
after HEADER_READ_TIMEOUT_SECONDS, 10 s by default) and how many were still open 5 s later.
Then `--cap-probe` connections (600) from one more address: how many were refused at once
(MAX_CONNECTIONS_PER_ADDRESS, 512).

`--ref GITREF` also runs it all against the service as it was at GITREF (in the same run).
Writes bench/trickle_results.json.

    .venv/bin/python bench/trickle.py
    .venv/bin/python bench/trickle.py --ref 0807632 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory

import harness as h
import httpx
from photos import upload_image

FILE_BYTES = 100 * 1024  # the Content-Length a trickler declares
UPLOAD_HEADERS = {"Content-Type": h.MULTIPART}


def head(port: int, length: int, path: str = "/api/v1/upload") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {h.MULTIPART}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def status_of(data: bytes) -> str:
    parts = data.split(b" ", 2)
    return parts[1].decode() if data.startswith(b"HTTP/") and len(parts) > 1 else "no answer"


async def trickler(port: int, address: str, interval: float, stop_at: float, reconnect: float, out: Counter):
    """One slow client: a head and the body's first bytes, then a byte per `interval`; once
    answered, again after `reconnect` seconds (negative: never)."""
    preamble = h.multipart(upload_image("100k"))[:200]
    while time.monotonic() < stop_at:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))
        except OSError:
            out["connect failed"] += 1
            await asyncio.sleep(1)
            continue
        answer = asyncio.ensure_future(reader.read(4096))
        try:
            writer.write(head(port, FILE_BYTES) + preamble)
            while time.monotonic() < stop_at:
                done, _ = await asyncio.wait([answer], timeout=interval)
                if done:
                    break
                writer.write(b"x")
                await writer.drain()
        except OSError:
            pass
        if answer.done() and not answer.cancelled() and answer.exception() is None:
            out[status_of(answer.result())] += 1
        elif time.monotonic() >= stop_at:
            out["still trickling at the end"] += 1
        else:
            out["no answer"] += 1
        answer.cancel()
        writer.close()
        if reconnect < 0:
            return
        await asyncio.sleep(reconnect)


def attack(port: int, addresses: list[str], args: argparse.Namespace, seconds: float) -> dict:
    """The trickling clients, in a process of their own (the good client's timings stay its own)."""

    async def run() -> Counter:
        outcomes: Counter = Counter()
        stop_at = time.monotonic() + seconds
        every, again = args.interval, args.reconnect
        await asyncio.gather(
            *(
                trickler(port, addresses[i % len(addresses)], every, stop_at, again, outcomes)
                for i in range(args.connections)
            )
        )
        return outcomes

    return dict(asyncio.run(run()))


async def good_uploads(url: str, body: bytes, concurrency: int, seconds: float) -> dict:
    """Upload `body` from 127.0.0.1 with `concurrency` clients for `seconds`: latencies, failures."""
    latencies: list[float] = []
    failures: Counter = Counter()
    health: list[float] = []
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency + 1)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def worker() -> None:
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                try:
                    r = await client.post(url + "/api/v1/upload", content=body, headers=UPLOAD_HEADERS)
                    ok = r.status_code == 201
                    outcome = str(r.status_code)
                except httpx.HTTPError as exc:
                    ok, outcome = False, type(exc).__name__
                if ok:
                    latencies.append((time.perf_counter() - started) * 1000)
                else:
                    failures[outcome] += 1
                    await asyncio.sleep(0.1)

        async def probe() -> None:
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                try:
                    await client.get(url + "/health")
                    health.append((time.perf_counter() - started) * 1000)
                except httpx.HTTPError:
                    failures["health failed"] += 1
                await asyncio.sleep(0.5)

        await asyncio.gather(*(worker() for _ in range(concurrency)), probe())
    return {
        "uploads": len(latencies),
        "p50_ms": h.percentile(latencies, 50) if latencies else None,
        "p95_ms": h.percentile(latencies, 95) if latencies else None,
        "failures": dict(failures),
        "health_p95_ms": h.percentile(health, 95) if health else None,
    }


def temp_files(s: h.Server) -> int:
    return sum(1 for _root, _dirs, files in os.walk(s.store.parent) for f in files if f.startswith(".tmp-"))


async def trickle_attack(s: h.Server, args: argparse.Namespace, body: bytes) -> dict:
    port = int(s.url.rsplit(":", 1)[1])
    addresses = [f"127.0.0.{2 + i}" for i in range(args.addresses)]
    normal = await good_uploads(s.url, body, args.good_concurrency, args.normal_seconds)
    h.log(f"  {s.name}: without attack {normal}")
    cpu = h.cpu_seconds(s.pid)
    with ProcessPoolExecutor(1) as pool:
        loop = asyncio.get_running_loop()
        attackers = loop.run_in_executor(pool, attack, port, addresses, args, args.seconds)
        await asyncio.sleep(2)  # the attack is in place before the good client starts
        during = await good_uploads(s.url, body, args.good_concurrency, max(1.0, args.seconds - 4))
        outcomes = await attackers
    attack_cpu = h.cpu_seconds(s.pid) - cpu
    h.log(f"  {s.name}: during attack {during}; trickled requests {dict(outcomes)}")
    await asyncio.sleep(2)  # the server sees the last closes
    after = await good_uploads(s.url, body, args.good_concurrency, args.normal_seconds)
    left = temp_files(s)
    ratio = during["p95_ms"] / normal["p95_ms"] if during["p95_ms"] and normal["p95_ms"] else None
    return {
        "normal": normal,
        "attack": during,
        "after": after,
        "trickled": dict(outcomes),
        "temp_files_left": left,
        "server_cpu_s_during_attack": round(attack_cpu, 2),
        "p95_ratio": ratio,
        "result": h.verdict(ratio, lambda x: x <= 2.0) if ratio else "FAIL (no upload served in the attack)",
    }


async def partial_head(port: int, address: str, wait: float) -> tuple[str, float | None]:
    """A connection that sends part of a head: (what it got, seconds until closed or None)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))
    except OSError:
        return "connect failed", None
    started = time.monotonic()
    got = b""
    try:
        writer.write(b"POST /api/v1/upload HTTP/1.1\r\nHost: x\r\n")
        while data := await asyncio.wait_for(reader.read(4096), max(0.01, started + wait - time.monotonic())):
            got += data
        closed: float | None = time.monotonic() - started
    except TimeoutError:
        closed = None
    except OSError:
        closed = time.monotonic() - started
    writer.close()
    return (status_of(got) if got else "closed"), closed


async def idle_heads(s: h.Server, args: argparse.Namespace) -> dict:
    port = int(s.url.rsplit(":", 1)[1])
    addresses = [f"127.0.0.{2 + i}" for i in range(args.addresses)]
    wait = args.head_timeout + 5
    tasks = [partial_head(port, addresses[i % len(addresses)], wait) for i in range(args.idle_heads)]
    health = asyncio.ensure_future(good_uploads(s.url, b"", 0, 3))  # /health probes only
    results = await asyncio.gather(*tasks)
    probes = await health
    closed = sorted(t for _, t in results if t is not None)
    idle = {
        "connections": len(results),
        "answers": dict(Counter(kind for kind, _ in results)),
        "closed_p50_s": round(h.percentile(closed, 50), 2) if closed else None,
        "closed_max_s": round(closed[-1], 2) if closed else None,
        f"still_open_after_{wait:g}s": sum(1 for _, t in results if t is None),
        "health_p95_ms_during": probes["health_p95_ms"],
    }
    cap_address = f"127.0.0.{2 + args.addresses}"
    capped = await asyncio.gather(*(partial_head(port, cap_address, wait) for _ in range(args.cap_probe)))
    idle["one_address"] = {
        "connections": len(capped),
        "answers": dict(Counter(kind for kind, _ in capped)),
        f"still_open_after_{wait:g}s": sum(1 for _, t in capped if t is None),
    }
    return idle


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", action="append", default=[], help="also measure the service at this git ref")
    p.add_argument("--connections", type=int, default=1000, help="trickling connections (default 1000)")
    p.add_argument("--addresses", type=int, default=5, help="attacker addresses from 127.0.0.2 (default 5)")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between trickled bytes (default 10)")
    p.add_argument("--seconds", type=float, default=40.0, help="attack duration (default 40)")
    p.add_argument(
        "--reconnect", type=float, default=1.0, help="seconds until an answered trickler is back (-1: never)"
    )
    p.add_argument("--normal-seconds", type=float, default=10.0, help="good uploads, no attack (default 10)")
    p.add_argument("--good-concurrency", type=int, default=2, help="concurrent good uploads (default 2)")
    p.add_argument("--idle-heads", type=int, default=500, help="partial-head connections (default 500)")
    p.add_argument("--cap-probe", type=int, default=600, help="partial heads, one address (default 600)")
    p.add_argument("--head-timeout", type=float, default=10.0, help="HEADER_READ_TIMEOUT_SECONDS to set")
    p.add_argument("--only", default="trickle,heads", help="comma-separated subset of trickle,heads")
    p.add_argument("--output", type=Path, default=h.BENCH_DIR / "trickle_results.json")
    args = p.parse_args()
    phases = set(args.only.split(","))
    body = h.multipart(upload_image("100k"))
    rows, results = [], {}
    with ExitStack() as stack:
        work = Path(stack.enter_context(TemporaryDirectory(prefix="bench-")))
        env = {"HEADER_READ_TIMEOUT_SECONDS": f"{args.head_timeout:g}"}
        services = [stack.enter_context(h.service("service", work, **env))]
        for ref in args.ref:
            src = Path(stack.enter_context(h.checkout(ref)))
            services.append(stack.enter_context(h.service(f"@{ref}", work, src, **env)))
        for s in services:
            h.log(f"{s.name} (pid {s.pid})")
            out: dict = {}
            if "trickle" in phases:
                out["trickle"] = attack = asyncio.run(trickle_attack(s, args, body))
                rows.append(
                    {
                        "variant": s.name,
                        "p95 normal ms": attack["normal"]["p95_ms"],
                        "p95 attack ms": attack["attack"]["p95_ms"],
                        "ratio": attack["p95_ratio"],
                        "good failed": sum(attack["attack"]["failures"].values()),
                        "trickled": " ".join(f"{k}:{v}" for k, v in sorted(attack["trickled"].items())),
                        "tmp left": attack["temp_files_left"],
                        "result": attack["result"],
                    }
                )
            if "heads" in phases:
                out["idle_heads"] = asyncio.run(idle_heads(s, args))
                h.log(f"  {s.name}: idle heads {out['idle_heads']}")
            results[s.name] = out
    h.report(args.output, rows, vars(args) | {"output": str(args.output)}, results=results)
    return 0


if __name__ == "__main__":
    h.run_cli(main)
