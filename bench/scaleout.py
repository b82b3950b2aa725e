"""Scale-out figures (issue 15): throughput through nginx with 1, 2 and 3 replicas, S3 hit latency.

One cluster of three real replicas (tests/scaleout/cluster.py: separate DATA_DIRs, one fresh
PostgreSQL database, one S3 prefix, Redis) and three nginx instances from deploy/nginx.conf in
front of the first 1, 2 and 3 of them. wrk drives 100 KB uploads and skin cache hits
(POST /api/v1/analyze of an analyzed image) through each nginx; server CPU per request is
summed over all replicas (nginx's own is shown apart). Then the p50/p99 of single-client
cache hits from one S3-backed replica (direct, no nginx) against the embedded default (local
store, SQLite, in-process rate limits, one uvicorn, no nginx), in the same rounds. Rate limits
are on everywhere, at 1000000/minute (one client address). Each `--ref` adds an S3 replica
started from a git worktree of that ref, joined to the same cluster (the first replica's
environment, its own DATA_DIR), timed in the same rounds: before/after figures of one run.

    TEST_POSTGRES_URL=... TEST_REDIS_URL=... .venv/bin/python bench/scaleout.py [--rounds 3]
    ... bench/scaleout.py --latency-only --ref main --samples 1000 --rounds 3

S3: TEST_S3_* if set, else a `weed mini` started here (tests/seaweedfs.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import harness as h
import httpx
from photos import upload_image

sys.path.insert(0, str(h.REPO_ROOT))
from tests import seaweedfs  # noqa: E402
from tests.scaleout import cluster as c  # noqa: E402

LIMIT = "1000000/minute"
RATE_LIMITS = {f"RATE_LIMIT_{n}": LIMIT for n in ("UPLOAD", "ANALYZE", "AUTH", "LOGIN_USERNAME", "DEFAULT")}


def s3_options(stack: ExitStack, work: Path) -> dict[str, Any]:
    """TEST_S3_* from the environment, else a `weed mini` of our own."""
    if endpoint := os.environ.get("TEST_S3_ENDPOINT_URL", "").strip():
        return {
            "endpoint_url": endpoint,
            "access_key_id": os.environ["TEST_S3_ACCESS_KEY_ID"],
            "secret_access_key": os.environ["TEST_S3_SECRET_ACCESS_KEY"],
            "bucket": os.environ["TEST_S3_BUCKET"],
            "region": os.environ.get("TEST_S3_REGION", seaweedfs.REGION),
        }
    server = seaweedfs.start(work / "weed")
    stack.callback(server.stop)
    return {
        "endpoint_url": server.endpoint_url,
        "access_key_id": server.access_key,
        "secret_access_key": server.secret_key,
        "bucket": server.bucket,
        "region": server.region,
    }


def nginx_cpu(front: c.Nginx) -> float:
    """CPU seconds of nginx's master and its worker processes."""
    pid = front.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return sum(h.cpu_seconds(int(p)) for p in [pid, *children])


def through(front: c.Nginx, replicas: list[c.Server], path: str, args, body: Path, ctype: str):
    """A wrk run through `front`, to call later; adds the replicas' summed CPU per request."""

    def run() -> dict[str, Any]:
        target = h.Server("nginx", front.process.pid, front.base_url, Path())
        before, proxy = sum(h.cpu_seconds(r.pid) for r in replicas), nginx_cpu(front)
        got = h.wrk(target, path, args.duration, args.connections, body, ctype)
        spent = sum(h.cpu_seconds(r.pid) for r in replicas) - before
        got["nginx_cpu_ms_per_request"] = (nginx_cpu(front) - proxy) * 1000 / got["requests"]
        got["cpu_ms_per_request"] = spent * 1000 / got["requests"]
        return got

    return run


def sampled(client: httpx.Client, server: h.Server, image_id: str, count: int):
    """`count` sequential cache hits of `server`, to call later: p50/p99 ms, CPU ms per request."""

    def run() -> dict[str, Any]:
        cpu = h.cpu_seconds(server.pid)
        ms = [h.analyze(client, server, image_id, "skin", "HIT")[0] for _ in range(count)]
        return {
            "p50_ms": h.percentile(ms, 50),
            "p99_ms": h.percentile(ms, 99),
            "cpu_ms_per_request": (h.cpu_seconds(server.pid) - cpu) * 1000 / count,
            "errors": 0,
        }

    return run


def replica_env(pid: int) -> dict[str, str]:
    """The environment a cluster replica runs with (from /proc), but its own DATA_DIR."""
    pairs = (item.partition("=") for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if item)
    env = {k: v for k, _, v in pairs if k not in ("DATA_DIR", "PROMETHEUS_MULTIPROC_DIR")}
    return {"RATE_LIMITS_ENABLED": "true", **env}  # on, as in the replica (h.service turns them off)


def seed_hit(client: httpx.Client, via: h.Server, check: list[h.Server], body: bytes) -> str:
    """Upload and analyze an image through `via`; every server in `check` must answer a HIT."""
    image_id = h.upload(client, via, body)
    h.analyze(client, via, image_id, "skin", "MISS")
    for s in check:
        h.analyze(client, s, image_id, "skin", "HIT")
    return image_id


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (default 5)")
    p.add_argument("--rounds", type=int, default=1, help="rounds (default 1)")
    p.add_argument("--connections", type=int, default=12, help="wrk connections (default 12)")
    p.add_argument("--samples", type=int, default=300, help="sequential hits timed per server (default 300)")
    p.add_argument("--output", type=Path, default=h.BENCH_DIR / "scaleout_results.json")
    p.add_argument(
        "--ref", action="append", default=[], help="also time hits of an S3 replica at this git ref"
    )
    p.add_argument("--latency-only", action="store_true", help="skip the throughput runs through nginx")
    args = p.parse_args()
    h.ensure_wrk()
    h.WORK_DIR.mkdir(exist_ok=True)
    upload_body = h.WORK_DIR / "upload-100k.body"
    upload_body.write_bytes(h.multipart(upload_image("100k")))
    small = upload_body.read_bytes()
    started = time.monotonic()
    with ExitStack() as stack:
        work = Path(stack.enter_context(TemporaryDirectory(prefix="bench-scaleout-")))
        s3 = s3_options(stack, work)
        cl = stack.enter_context(c.start_cluster(work / "cluster", s3, replicas=3, workers=0, **RATE_LIMITS))
        embedded = stack.enter_context(h.service("embedded", work, RATE_LIMITS_ENABLED="true", **RATE_LIMITS))
        fronts: list[c.Nginx] = []
        max_body = c.Settings(_env_file=None).max_request_body_bytes
        for n in (1, 2, 3):
            front = c.Nginx(work / f"nginx{n}", [r.port for r in cl.replicas[:n]], max_body)
            stack.callback(front.stop)
            fronts.append(front)
        client = stack.enter_context(httpx.Client(timeout=60))
        direct = [h.Server(f"replica{i}", r.pid, r.base_url, Path()) for i, r in enumerate(cl.replicas)]
        via3 = h.Server("nginx3", fronts[2].process.pid, fronts[2].base_url, Path())
        image_id = seed_hit(client, via3, direct, small)
        hit_body = work / "hit.json"
        hit_body.write_text(f'{{"image_id": "{image_id}", "analyzer": "skin"}}')
        embedded_id = seed_hit(client, embedded, [], small)
        hits = {"S3 replica": sampled(client, direct[0], image_id, args.samples)}
        for ref in args.ref:
            env = replica_env(cl.replicas[0].pid)
            old = stack.enter_context(
                h.service(f"S3 replica@{ref}", work, Path(stack.enter_context(h.checkout(ref))), **env)
            )
            h.analyze(client, old, image_id, "skin", "HIT")
            hits[f"S3 replica@{ref}"] = sampled(client, old, image_id, args.samples)
        h.log(f"cluster ready after {time.monotonic() - started:.0f} s")

        runs = {}
        for n, front in enumerate([] if args.latency_only else fronts, 1):
            replicas = cl.replicas[:n]
            runs[f"upload 100k x{n}"] = through(
                front, replicas, "/api/v1/upload", args, upload_body, h.MULTIPART
            )
            runs[f"skin hit x{n}"] = through(
                front, replicas, "/api/v1/analyze", args, hit_body, "application/json"
            )
        title = f"through nginx: wrk -c{args.connections} -d{args.duration:g}s x {args.rounds} rounds"
        got = h.alternate(args.rounds, runs, title) if runs else {}
        latency = h.alternate(
            args.rounds,
            {**hits, "embedded": sampled(client, embedded, embedded_id, args.samples)},
            f"skin hit latency, one client, {args.samples} sequential requests",
        )

    rows: list[dict[str, Any]] = []
    for kind in () if args.latency_only else ("upload 100k", "skin hit"):
        one = h.med(got[f"{kind} x1"], "rps")
        for n in (1, 2, 3):
            r = got[f"{kind} x{n}"]
            rows.append(
                {
                    "load": kind,
                    "replicas": n,
                    "rps": h.med(r, "rps"),
                    "vs_1_replica": h.med(r, "rps") / one,
                    "replica_cpu_ms_per_req": h.med(r, "cpu_ms_per_request"),
                    "nginx_cpu_ms_per_req": h.med(r, "nginx_cpu_ms_per_request"),
                    "errors": sum(x["errors"] for x in r),
                }
            )
    emb_p50, emb_p99 = h.med(latency["embedded"], "p50_ms"), h.med(latency["embedded"], "p99_ms")
    for name, r in latency.items():
        rows.append(
            {
                "load": f"skin hit latency: {name}",
                "p50_ms": h.med(r, "p50_ms"),
                "p99_ms": h.med(r, "p99_ms"),
                "p50_vs_embedded": h.med(r, "p50_ms") / emb_p50,
                "p99_vs_embedded": h.med(r, "p99_ms") / emb_p99,
                "replica_cpu_ms_per_req": h.med(r, "cpu_ms_per_request"),
            }
        )
    settings = {**vars(args), "output": str(args.output), "seconds": round(time.monotonic() - started)}
    h.report(args.output, rows, settings, throughput=got, latency=latency)
    return 1 if any(row.get("errors") for row in rows) else 0


if __name__ == "__main__":
    h.run_cli(main)
