"""Face mesh and skin-measure benchmark, in process: p50 on a 12 MP JPEG, and RSS at start.

1. `face` p50 on bench/photos.py's 12 MP astronaut JPEG (4000x3000, one ~700 px face), the
   mesh backend (default: BlazeFace full range, whole image then tiles only when needed)
   beside the old mesh backend (BlazeFace short range, the code of `--old-ref`, default the
   merge base with main, in a git worktree and its own process, same photo, same run) and
   dlib's; target < 80 ms.
2. `skin-measure` p50 end to end (decode, mesh, gate, measurements, overlay) on the same
   photo; target < 120 ms.
3. RSS at start: a fresh process that builds the registry (models loaded) with the default
   ANALYZERS (classify, face, skin-measure; mesh), beside the former default (classify, face
   on dlib); target: no higher than ~210 MB.
Wall and CPU time are both reported: on a shared 2-core machine the wall time includes
waiting for the CPU. Usage: `.venv/bin/python bench/face.py [--runs 30] [--old-ref REF]`;
ONNX Runtime uses ONNX_THREADS (default 1). The old backend needs
face_detection_short_range.onnx in models/ (`git show REF:scripts/fetch_face_mesh.py`).
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


def p50_ms(fn, runs: int) -> tuple[float, float]:
    """Median wall time and median CPU time (this process, all threads) of `fn`, ms."""
    fn()  # warm-up
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return statistics.median(wall), statistics.median(cpu)


OLD_PROBE = """
import json, statistics, sys, time
from pathlib import Path
from app.analyzers.base import ImageSource
from app.analyzers.face.analyzer import FaceAnalyzer, FaceParams
from app.analyzers.face.mesh_models import FaceMesh
path, model_dir, runs, threads = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
face = FaceAnalyzer(mesh=FaceMesh(model_dir, threads))
source, params = ImageSource("bench", path), FaceParams()
face.analyze(source, params)
wall, cpu = [], []
for _ in range(runs):
    t, c = time.perf_counter(), time.process_time()
    face.analyze(source, params)
    wall.append((time.perf_counter() - t) * 1000)
    cpu.append((time.process_time() - c) * 1000)
print(json.dumps([statistics.median(wall), statistics.median(cpu)]))
"""


def old_backend_p50(ref: str, photo: Path, runs: int, threads: int) -> tuple[float, float]:
    """`face` p50 (wall, CPU ms) of the code at `ref`, in its own process (same photo)."""
    from harness import checkout

    with checkout(ref) as path:
        out = subprocess.run(
            [sys.executable, "-c", OLD_PROBE, str(photo), str(ROOT / "models"), str(runs), str(threads)],
            cwd=path,
            env={**os.environ, "PYTHONPATH": path},
            check=True,
            capture_output=True,
            text=True,
        )
    wall, cpu = json.loads(out.stdout.strip().splitlines()[-1])
    return wall, cpu


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
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument(
        "--old-ref", default="", help="the old backend's commit (default: merge base with main)"
    )
    args = parser.parse_args()
    from photos import face_photo

    from app.analyzers.base import ImageSource
    from app.analyzers.face.analyzer import FaceAnalyzer, FaceParams
    from app.analyzers.face.mesh_models import FaceMesh
    from app.analyzers.skin_measure.analyzer import SkinMeasureAnalyzer
    from app.analyzers.skin_measure.models import SkinMeasureParams

    threads = int(os.environ.get("ONNX_THREADS", "1"))
    source = ImageSource("bench", face_photo())
    mesh = FaceMesh(ROOT / "models", threads)
    face, dlib = FaceAnalyzer(mesh=mesh), FaceAnalyzer("dlib")
    skin, face_params, skin_params = SkinMeasureAnalyzer(mesh), FaceParams(), SkinMeasureParams()
    rows = {
        "face p50, mesh, 12 MP JPEG (ms)": (
            p50_ms(lambda: face.analyze(source, face_params), args.runs),
            "< 80",
        ),
        "face p50, old mesh (short range), 12 MP JPEG (ms)": (
            old_backend_p50(
                args.old_ref
                or subprocess.check_output(["git", "merge-base", "HEAD", "main"], text=True).strip(),
                face_photo(),
                args.runs,
                threads,
            ),
            "(former backend)",
        ),
        "face p50, dlib, 12 MP JPEG (ms)": (
            p50_ms(lambda: dlib.analyze(source, face_params), max(5, args.runs // 3)),
            "(former default)",
        ),
        "skin-measure p50, 12 MP JPEG (ms)": (
            p50_ms(lambda: skin.analyze(source, skin_params), args.runs),
            "< 120",
        ),
    }
    new = rss_at_start(ONNX_THREADS=str(threads))
    old = rss_at_start(ONNX_THREADS=str(threads), ANALYZERS="classify,face", FACE_BACKEND="dlib")
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs, ONNX threads {threads}")
    print(f"{'':48s} {'wall':>8s} {'CPU':>8s}")
    for name, ((wall, cpu), target) in rows.items():
        print(f"{name:48s} {wall:8.1f} {cpu:8.1f}   target {target}")
    label = "RSS at start, " + "+".join(new["analyzers"]) + " (MiB)"
    print(f"{label:48s} {new['rss_mib']:8.1f}   target <= ~210")
    print(f"{'RSS at start, classify+face on dlib (MiB)':48s} {old['rss_mib']:8.1f}   (former default)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
