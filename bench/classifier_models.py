"""What a second classifier costs: classify cache misses by the default model (EfficientNet-Lite0,
224 px) and by a named one (`MODELS`, default EfficientNet-Lite2, 260 px), in one service process.

The service runs with MODELS=<name>=<path>, ANALYSIS_THREADS=1 and ONNX_THREADS=1 (one core per
classification, so CPU per request is the model's cost, not a thread count's). Each round
uploads the --count distinct photos afresh (new ids: every call a miss) and classifies each,
one client, one at a time, with `"params": {"model": ...}`; the two models alternate which
goes first. Reported: server CPU per classification (/proc of the uvicorn process, upload
excluded) and p50 latency, medians of the rounds, and their ratios named model / default.

    .venv/bin/python bench/classifier_models.py [--model-path models/efficientnet_lite2.onnx]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import harness as h
import httpx
from photos import distinct_photos


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-path", type=Path, default=h.MODEL_DIR / "efficientnet_lite2.onnx")
    p.add_argument("--name", default="lite2", help="its name in MODELS (default lite2)")
    p.add_argument("--count", type=int, default=20, help="distinct photos per round (default 20)")
    p.add_argument("--rounds", type=int, default=4, help="rounds (default 4)")
    p.add_argument("--output", type=Path, default=h.BENCH_DIR / "classifier_models_results.json")
    args = p.parse_args()
    if not args.model_path.is_file():
        raise SystemExit(f"{args.model_path} is missing: `make model-lite2` exports it")
    photos = [h.multipart(path) for path in distinct_photos(args.count)]
    env = {
        "MODELS": f"{args.name}={args.model_path.resolve()}",
        "ANALYZERS": "classify",
        "ANALYSIS_THREADS": "1",
        "ONNX_THREADS": "1",
    }
    with (
        TemporaryDirectory(dir=h.WORK_DIR if h.WORK_DIR.exists() else None) as work,
        h.service("service", Path(work), **env) as server,
        httpx.Client(timeout=120) as client,
    ):

        def misses(model: str) -> dict[str, Any]:
            ids = [h.upload(client, server, body) for body in photos]
            cpu, ms = h.cpu_seconds(server.pid), []
            for image_id in ids:
                body = {"image_id": image_id, "analyzer": "classify", "params": {"model": model}}
                started = time.perf_counter()
                r = client.post(server.url + "/api/v1/analyze", json=body)
                ms.append((time.perf_counter() - started) * 1000)
                if r.status_code != 200 or r.headers.get("x-cache") != "MISS":
                    raise RuntimeError(f"{model}: {r.status_code} {r.headers.get('x-cache')}: {r.text[:300]}")
            cpu = h.cpu_seconds(server.pid) - cpu
            return {"cpu_ms_per_request": cpu * 1000 / len(ids), "p50_ms": h.percentile(ms, 50)}

        runs = h.alternate(
            args.rounds,
            {"default": lambda: misses("default"), args.name: lambda: misses(args.name)},
            f"classify misses, {args.count} photos per round, one client",
            before_round=server.empty,
        )
    rows: list[dict[str, Any]] = []
    for name, results in runs.items():
        rows.append(
            {
                "model": name,
                "cpu_ms_per_request": h.med(results, "cpu_ms_per_request"),
                "p50_ms": h.med(results, "p50_ms"),
                "runs": results,
            }
        )
    base, named = rows
    rows.append(
        {
            "model": f"{args.name} / default",
            "cpu_ms_per_request": named["cpu_ms_per_request"] / base["cpu_ms_per_request"],
            "p50_ms": named["p50_ms"] / base["p50_ms"],
        }
    )
    h.report(args.output, rows, {**vars(args), **env})
    return 0


if __name__ == "__main__":
    h.run_cli(main)
