"""Face mesh and skin-measure benchmark, in process: p50 on a 12 MP JPEG, and RSS at start.

1. `face` p50 on bench/photos.py's 12 MP astronaut JPEG (4000x3000, one ~820 px face), this
   checkout (decode at 1/8, whole image, tiles only when a face that matters could be missed)
   beside the same code at each `--refs` commit (default: the merge base with main, i.e. the
   previous code, and a4ee16c, the last short-range BlazeFace backend), each in a git worktree
   and its own process, same photo, same run, in `--rounds` alternating rounds; target < 80 ms.
   dlib's `face` for reference.
2. `skin-measure` p50 end to end (decode, mesh, gate, measurements, overlay) on the same
   photo, here and at the same refs; target < 120 ms (it was ~103 ms before the tiles).
3. RSS at start: a fresh process that builds the registry (models loaded) with the default
   ANALYZERS (classify, face, skin-measure; mesh), beside the former default (classify, face
   on dlib); target: no higher than ~210 MB.
Wall and CPU time are both reported (medians of every call of every round): on a shared 2-core
machine the wall time includes waiting for the CPU; compare ratios of the same run. Usage:
`.venv/bin/python bench/face.py [--runs 30] [--rounds 3] [--refs REF,REF]`; ONNX Runtime uses
ONNX_THREADS (default 1). The short-range ref needs face_detection_short_range.onnx in models/
(`git show a4ee16c:scripts/fetch_face_mesh.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

RSS_PROBE = """
import json, re, sys
from pathlib import Path
from app.analyzers.registry import build_registry
from app.analyzers.settings import AnalyzerSettings
from app.core.config import Settings
registry = build_registry(AnalyzerSettings.from_settings(Settings(_env_file=None)))
assert not registry.unavailable, registry.unavailable
rss = int(re.search(r"VmRSS:\\s+(\\d+)", Path("/proc/self/status").read_text())[1]) / 1024
print(json.dumps({"analyzers": registry.names(), "rss_mib": round(rss, 1)}))
"""


def samples_ms(fn, runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU times (this process, all threads) of `runs` calls of `fn` after a warm-up, ms."""
    fn()  # warm-up
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return wall, cpu


PROBE = """
import json, sys, time
from pathlib import Path
from app.analyzers.base import ImageSource
from app.analyzers.face.analyzer import FaceAnalyzer, FaceParams
from app.analyzers.face.mesh_models import FaceMesh
from app.analyzers.skin_measure.analyzer import SkinMeasureAnalyzer
from app.analyzers.skin_measure.models import SkinMeasureParams
path, model_dir, runs, threads = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
mesh = FaceMesh(model_dir, threads)
source = ImageSource("bench", path)
calls = {
    "face": (lambda f=FaceAnalyzer(mesh=mesh), p=FaceParams(): f.analyze(source, p)),
    "skin-measure": (lambda s=SkinMeasureAnalyzer(mesh), p=SkinMeasureParams(): s.analyze(source, p)),
}
out = {}
for name, fn in calls.items():
    fn()
    wall, cpu = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    out[name] = [wall, cpu]
print(json.dumps(out))
"""


def probe(path: str, photo: Path, runs: int, threads: int) -> dict[str, list[list[float]]]:
    """`face` and `skin-measure` wall and CPU times (ms) of the code checked out at `path`,
    in its own process (same photo, same models)."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(photo), str(ROOT / "models"), str(runs), str(threads)],
        cwd=path,
        env={**os.environ, "PYTHONPATH": path},
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def rss_at_start(**env: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", RSS_PROBE],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )
    return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="calls per analyzer and checkout, in all")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument(
        "--refs", default="", help="commits, comma-separated (default: merge base with main, a4ee16c)"
    )
    args = parser.parse_args()
    from contextlib import ExitStack

    from harness import checkout
    from photos import face_photo

    threads = int(os.environ.get("ONNX_THREADS", "1"))
    refs = [r for r in args.refs.split(",") if r] or [
        subprocess.check_output(["git", "merge-base", "HEAD", "main"], text=True).strip()[:12],
        "a4ee16c",
    ]
    photo = face_photo()
    per_round = max(1, args.runs // args.rounds)
    times: dict[tuple[str, str], list[list[float]]] = {}
    with ExitStack() as stack:
        paths = {"this checkout": str(ROOT), **{ref: stack.enter_context(checkout(ref)) for ref in refs}}
        for r in range(args.rounds):
            order = list(paths.items())
            for label, path in order if r % 2 == 0 else order[::-1]:
                for name, (wall, cpu) in probe(path, photo, per_round, threads).items():
                    acc = times.setdefault((name, label), [[], []])
                    acc[0] += wall
                    acc[1] += cpu
    from app.analyzers.base import ImageSource
    from app.analyzers.face.analyzer import FaceAnalyzer, FaceParams

    dlib_wall, dlib_cpu = samples_ms(
        lambda d=FaceAnalyzer("dlib"): d.analyze(ImageSource("bench", photo), FaceParams()), max(5, per_round)
    )
    new = rss_at_start(ONNX_THREADS=str(threads))
    old = rss_at_start(ONNX_THREADS=str(threads), ANALYZERS="classify,face", FACE_BACKEND="dlib")
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs, ONNX threads {threads}")
    print(f"{'12 MP JPEG, p50 (ms)':44s} {'wall':>8s} {'CPU':>8s} {'CPU ratio':>10s}")
    targets = {"face": "< 80 ms", "skin-measure": "< 120 ms"}
    for name in ("face", "skin-measure"):
        base_cpu = statistics.median(times[(name, "this checkout")][1])
        for label in paths:
            wall, cpu = (statistics.median(v) for v in times[(name, label)])
            note = f"target {targets[name]}" if label == "this checkout" else ""
            print(f"{name + ', ' + label:44s} {wall:8.1f} {cpu:8.1f} {cpu / base_cpu:9.2f}x   {note}")
    print(f"{'face, dlib':44s} {statistics.median(dlib_wall):8.1f} {statistics.median(dlib_cpu):8.1f}")
    label = "RSS at start, " + "+".join(new["analyzers"]) + " (MiB)"
    print(f"{label:44s} {new['rss_mib']:8.1f}   target <= ~210")
    print(f"{'RSS at start, classify+face on dlib (MiB)':44s} {old['rss_mib']:8.1f}   (former default)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
