"""Phone photos benchmark, in process: what cutting a trailer, a 48 MP photo and HEIC cost.

1. The SHA-256 of a Motion Photo's kept image after its trailer is cut (3.5 MB JPEG + 1.5 MB
   MP4, hashed while streaming in 64 KiB chunks): resuming from the last streaming checkpoint
   (what ingest does) against re-hashing the kept prefix from byte 0; the whole upload's
   streaming hash, for scale.
2. A 48 MP JPEG (8000x6000, the astronaut upscaled, ~2.2 MB): time and peak RSS growth (a
   fresh process each, the peak reset through /proc/self/clear_refs after the imports) of the
   upload check (structure walk + header), of the decodes the analyzers do (classify: draft,
   short side >= 256; face mesh: draft, long side >= 960) and of a full decode (what a format
   without reduced decoding costs: PNG, WebP, a HEIC without a large enough thumbnail).
3. `face` (mesh backend) on bench/photos.py's 12 MP astronaut: JPEG, against the same picture
   as HEIC with a 1024 px embedded thumbnail (decoded instead of the image, pillow-heif's
   `draft`), and without one (a full HEVC decode); target: HEIC within 2x the JPEG.
Medians of CPU time (this process, all threads) and wall time: the machine is shared.
Usage: `.venv/bin/python bench/phone.py [--runs 15]`.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from harness import WORK_DIR, log, report  # noqa: E402

CHUNK = 64 * 1024

MEMORY_PROBE = """
import json, re, sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from app.analyzers.imaging import load_rgb, load_rgb_reduced, to_rgb
from app.core.formats import FORMATS
from app.services.image_check import examine_image
from PIL import Image
data = Path({path!r}).read_bytes()
case = {case!r}
def status(key):
    return int(re.search(key + r":\\s+(\\d+)", Path("/proc/self/status").read_text())[1]) / 1024
Path("/proc/self/clear_refs").write_text("5")  # peak RSS := RSS now
before = status("VmRSS")
start, cpu = time.perf_counter(), time.process_time()
if case == "upload check":
    examine_image(data, FORMATS["jpeg"], 60_000_000)
elif case == "classify decode":
    load_rgb(data, min_size=(256, 256))
elif case == "face decode":
    load_rgb_reduced(data, 960)
else:
    im = Image.open(Path({path!r})); im.load(); to_rgb(im)
wall, cpu = time.perf_counter() - start, time.process_time() - cpu
grown = status("VmHWM") - before
print(json.dumps({{"ms": wall * 1000, "cpu_ms": cpu * 1000, "peak_rss_growth_mib": grown}}))
"""


def median_ms(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds of `fn` (one warm-up call first)."""
    fn()
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def hashing(runs: int) -> list[dict]:
    from app.services.multipart import HASH_CHECKPOINT_BYTES, ReceivedFile

    image = os.urandom(3_500_000)
    body = image + os.urandom(1_500_000)
    hasher, checkpoints = hashlib.sha256(), []
    for i in range(0, len(body), CHUNK):
        hasher.update(body[i : i + CHUNK])
        end = min(len(body), i + CHUNK)
        if end // HASH_CHECKPOINT_BYTES != i // HASH_CHECKPOINT_BYTES:
            checkpoints.append((end, hasher.copy()))
    received = ReceivedFile(Path("x"), "file", None, None, len(body), None, hash_checkpoints=checkpoints)
    assert received.prefix_sha256(body, len(image)) == hashlib.sha256(image).hexdigest()

    def rehash() -> str:
        with memoryview(body) as view:
            return hashlib.sha256(view[: len(image)]).hexdigest()

    def stream() -> str:
        h = hashlib.sha256()
        for i in range(0, len(body), CHUNK):
            h.update(body[i : i + CHUNK])
        return h.hexdigest()

    rows = []
    for name, fn in (
        ("resume from checkpoint (ingest)", lambda: received.prefix_sha256(body, len(image))),
        ("re-hash the kept 3.5 MB", rehash),
        ("streaming hash of the 5 MB upload", stream),
    ):
        wall, cpu = median_ms(fn, runs)
        rows.append({"case": f"hash: {name}", "ms": wall, "cpu_ms": cpu})
    return rows


def photo_48mp() -> Path:
    path = WORK_DIR / "photo-48mp.jpg"
    if not path.exists():
        import numpy as np
        from PIL import Image
        from skimage import data

        big = Image.fromarray(data.astronaut()).resize((8000, 6000), Image.Resampling.BICUBIC)
        noise = np.random.default_rng(48).normal(0, 2.0, (6000, 8000, 3)).astype(np.float32)
        pixels = np.clip(np.asarray(big, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, "JPEG", quality=80)
    return path


def decoding(runs: int) -> list[dict]:
    path = photo_48mp()
    rows = []
    for case in ("upload check", "classify decode", "face decode", "full decode (RGB)"):
        probes = []
        for _ in range(max(3, runs // 5)):
            out = subprocess.run(
                [sys.executable, "-c", MEMORY_PROBE.format(root=str(ROOT), path=str(path), case=case)],
                check=True,
                capture_output=True,
                text=True,
            )
            probes.append(json.loads(out.stdout))
        rows.append(
            {
                "case": f"48 MP JPEG ({path.stat().st_size / 1e6:.2f} MB): {case}",
                "ms": statistics.median(p["ms"] for p in probes),
                "cpu_ms": statistics.median(p["cpu_ms"] for p in probes),
                "peak_rss_growth_mib": statistics.median(p["peak_rss_growth_mib"] for p in probes),
            }
        )
    return rows


def heic(runs: int) -> list[dict]:
    from app.analyzers.facemesh import FaceMesh
    from photos import face_photo
    from PIL import Image

    from app.analyzers.base import ImageSource
    from app.analyzers.face import FaceAnalyzer, FaceParams
    from app.core.formats import enable_heif

    enable_heif()
    jpeg = face_photo()
    sources = {"JPEG": jpeg}
    with Image.open(jpeg) as im:
        im.load()
        for name, thumbnails in (("HEIC, 1024 px thumbnail", [1024]), ("HEIC, no thumbnail", [])):
            path = WORK_DIR / f"face-12mp-{len(thumbnails)}.heic"
            if not path.exists():
                buf = io.BytesIO()
                im.save(buf, "HEIF", quality=80, thumbnails=thumbnails)
                path.write_bytes(buf.getvalue())
            sources[name] = path
    face = FaceAnalyzer(mesh=FaceMesh(ROOT / "models", int(os.environ.get("ONNX_THREADS", "1"))))
    params = FaceParams()
    rows, boxes = [], {}
    for name, path in sources.items():
        source = ImageSource("bench", path)
        boxes[name] = face.analyze(source, params).model_dump().get("box")  # type: ignore[union-attr]
        wall, cpu = median_ms(lambda source=source: face.analyze(source, params), runs)
        label = f"face, 12 MP {name} ({path.stat().st_size / 1e6:.2f} MB)"
        rows.append({"case": label, "ms": wall, "cpu_ms": cpu})
    base = rows[0]["cpu_ms"]
    for row in rows:
        row["cpu_vs_jpeg"] = row["cpu_ms"] / base
    log(f"face boxes: {boxes}")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    rows = hashing(args.runs * 4) + decoding(args.runs) + heic(args.runs)
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
    report(WORK_DIR / "phone.json", rows, {"runs": args.runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
