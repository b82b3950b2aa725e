"""Analyzer benchmark: the service's analyze path against the same analyzer code in this process.

1. classify throughput: `POST /api/v1/analyze {"analyzer": "classify"}` cache misses (distinct
   photos, freshly uploaded) from 4 concurrent httpx clients, against the service's own
   analyzers (built by `app.analyzers.build_registry` from the same settings) on a pool of
   ANALYSIS_THREADS threads in this process; target >= 0.85x.
2. classify p50 of one client, one image at a time, against in-process; target <= 1.3x.
3. face p50 on a 12 MP JPEG, service misses and in-process; target < 150 ms.
4. cache hits: every classify call above repeated; the share answered `X-Cache: HIT` (target 1).
Each phase runs --rounds times, the side that goes first alternating; figures are medians.
The clients' CPU per call is reported: on a small machine it is taken from the service. The
rate of cache hits is measured by bench/upload.py with wrk (httpx would be the bottleneck).
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import harness as h
import httpx
from photos import distinct_photos, face_photo

TARGETS: dict[str, tuple[str, Callable[[float], bool]]] = {
    "classify throughput, 4 clients": (">= 0.85x", lambda ratio: ratio >= 0.85),
    "classify p50, 1 client": ("<= 1.30x", lambda ratio: ratio <= 1.3),
    "face p50, 12 MP": ("< 150 ms", lambda ms: ms < 150),
    "cache-hit rate of repeats": ("= 1.000", lambda rate: rate == 1.0),
}


def concurrently(fn: Callable[[httpx.Client, Any], Any], items: Sequence[Any], clients: list[httpx.Client]):
    """`fn(client, item)` for every item, one thread per client; req/s and this process's CPU per call."""
    free: queue.SimpleQueue[httpx.Client] = queue.SimpleQueue()
    for client in clients:
        free.put(client)

    def call(item: Any) -> Any:
        client = free.get()
        try:
            return fn(client, item)
        finally:
            free.put(client)

    cpu, started = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(len(clients)) as pool:
        out = list(pool.map(call, items))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"out": out, "rps": len(items) / wall, "client_cpu_ms": cpu * 1000 / len(items)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=40, help="distinct photos (default 40)")
    p.add_argument("--passes", type=int, default=3, help="fresh uploads of each photo per throughput run")
    p.add_argument("--rounds", type=int, default=2, help="rounds of every phase (default 2)")
    p.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    p.add_argument("--analysis-threads", type=int, default=2, help="ANALYSIS_THREADS of both (default 2)")
    p.add_argument("--face-runs", type=int, default=10, help="face calls per round (default 10)")
    p.add_argument("--hit-requests", type=int, default=2000, help="repeat calls per cache-hit pass")
    p.add_argument("--output", type=Path, default=h.BENCH_DIR / "analyzers_results.json")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    args = p.parse_args()
    env = {"ANALYZERS": "classify,face", "ANALYSIS_THREADS": str(args.analysis_threads)}
    os.environ.update(env, MODEL_DIR=str(h.MODEL_DIR))  # the same settings in the service and here
    sys.path.insert(0, str(h.REPO_ROOT))
    from app.analyzers import ImageSource, build_registry
    from app.analyzers.settings import AnalyzerSettings
    from app.core.config import Settings

    registry = build_registry(AnalyzerSettings.from_settings(Settings(_env_file=None)))  # type: ignore[call-arg]
    classify, face = registry.get("classify"), registry.get("face")
    photos, face_jpeg = distinct_photos(args.count), face_photo()
    bodies, face_body = [h.multipart(path) for path in photos], h.multipart(face_jpeg)

    def in_process(analyzer: Any) -> Callable[[Path], float]:
        def run(path: Path) -> float:
            started = time.perf_counter()
            analyzer.analyze(ImageSource(image_id="bench", path=path), analyzer.params_model())
            return (time.perf_counter() - started) * 1000

        return run

    def latencies(ms: list[float]) -> dict[str, Any]:
        return {"p50_ms": h.percentile(ms, 50), "p95_ms": h.percentile(ms, 95), "ms": ms}

    with ExitStack() as stack:
        work = Path(stack.enter_context(TemporaryDirectory(prefix="bench-analyzers-")))
        svc = stack.enter_context(h.service("service", work, **env))
        h.log(f"service pid {svc.pid}; {len(photos)} photos; face photo {face_jpeg.stat().st_size:,} bytes")
        pool = stack.enter_context(ThreadPoolExecutor(args.analysis_threads))
        clients = [stack.enter_context(httpx.Client(timeout=120)) for _ in range(args.clients)]
        classified: list[str] = []  # image ids analyzed with classify: the cache-hit phase repeats them

        def service_misses(bodies: list[bytes], analyzer: str, n: int) -> dict[str, Any]:
            """Fresh uploads (untimed), then every image analyzed once from `n` clients: all misses."""
            ids = concurrently(lambda c, body: h.upload(c, svc, body), bodies, clients[:n])["out"]
            got = concurrently(lambda c, i: h.analyze(c, svc, i, analyzer, "MISS"), ids, clients[:n])
            classified.extend(ids if analyzer == "classify" else [])
            return {**got, **latencies([ms for ms, _cache in got.pop("out")])}

        def raw_throughput() -> dict[str, Any]:
            started = time.perf_counter()
            list(pool.map(in_process(classify), photos * args.passes))
            return {"rps": len(photos) * args.passes / (time.perf_counter() - started)}

        list(pool.map(in_process(classify), photos[:4]))  # warm-up: first inferences, connections
        in_process(face)(face_jpeg)
        service_misses(bodies[:4], "classify", args.clients)
        service_misses([face_body], "face", 1)
        phases = {
            "classify throughput, 4 clients": {
                "in-process": raw_throughput,
                "service": lambda: service_misses(bodies * args.passes, "classify", args.clients),
            },
            "classify p50, 1 client": {
                "in-process": lambda: latencies([in_process(classify)(path) for path in photos]),
                "service": lambda: service_misses(bodies, "classify", 1),
            },
            "face p50, 12 MP": {
                "in-process": lambda: latencies([in_process(face)(face_jpeg) for _ in range(args.face_runs)]),
                "service": lambda: service_misses([face_body] * args.face_runs, "face", 1),
            },
        }
        got = {name: h.alternate(args.rounds, runs, name) for name, runs in phases.items()}
        repeats = classified * -(-args.hit_requests // len(classified))
        hits = concurrently(lambda c, i: h.analyze(c, svc, i, "classify"), repeats, clients)

    rows = []
    for name, runs in got.items():
        key, unit = ("rps", "img/s") if "throughput" in name else ("p50_ms", "ms")
        mine, ref = h.med(runs["service"], key), h.med(runs["in-process"], key)
        target, ok = TARGETS[name]
        row = {"metric": name, "service": f"{mine:,.1f} {unit}", "in-process": f"{ref:,.1f} {unit}"}
        row |= {
            "ratio": mine / ref,
            "target": target,
            "result": h.verdict(mine if "face" in name else mine / ref, ok),
        }
        rows.append(row | {"client CPU ms/call": h.med(runs["service"], "client_cpu_ms")})
    rate = sum(cache == "HIT" for _ms, cache in hits["out"]) / len(hits["out"])
    target, ok = TARGETS["cache-hit rate of repeats"]
    rows.append({"metric": "cache-hit rate of repeats", "service": f"{rate:.3f}", "target": target})
    rows[-1] |= {"result": h.verdict(rate, ok), "client CPU ms/call": hits["client_cpu_ms"]}
    h.report(args.output, rows, vars(args), runs=got)
    return int(args.strict and any(row["result"] == "FAIL" for row in rows))


if __name__ == "__main__":
    h.run_cli(main)
