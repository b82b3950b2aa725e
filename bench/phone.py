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
3. `face`, `classify` and `skin-measure` on bench/photos.py's 12 MP astronaut: JPEG, against
   the same picture as HEIC (x265 q80: 512 px grid tiles and a 320 px thumbnail as an iPhone
   writes them; one image with a 1024 px thumbnail), each decoded by the analysis itself (what
   `RENDITION_FORMATS=` costs every analysis; a thumbnail >= 960 px is decoded instead of the
   image, pillow-heif's `draft`) and through its full-size JPEG rendition (what the service
   reads); and the rendition's one-off cost. Target: HEIC within 2x the JPEG.
Medians of CPU time (this process, all threads) and wall time: the machine is shared.
Usage: `.venv/bin/python bench/phone.py [--runs 15] [--only heic]`.
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

from harness import WORK_DIR, report  # noqa: E402

CHUNK = 64 * 1024

MEMORY_PROBE = """
import json, re, sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from app.analyzers.imaging import load_rgb, load_rgb_reduced, to_rgb
from app.core.formats import FORMATS
from app.services.validation.checks import examine_image
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


HEIC_CASES = {  # name -> pillow-heif save options (x265 at quality 80, as the earlier rows)
    "HEIC, 512 px grid, 320 px thumbnail (iPhone-like)": {"tile_size": 512, "thumbnails": [320]},
    "HEIC, one image, 1024 px thumbnail": {"thumbnails": [1024]},
}


def heic_files() -> dict[str, Path]:
    """The 12 MP astronaut as HEIC (x265 at 12 MP takes ~45 s each: made once, in WORK_DIR)."""
    from photos import face_photo
    from PIL import Image

    from app.core.formats import enable_heif

    enable_heif()
    files = {}
    for i, (name, options) in enumerate(HEIC_CASES.items()):
        path = WORK_DIR / f"face-12mp-case{i}.heic"
        if not path.exists():
            with Image.open(face_photo()) as im:
                buf = io.BytesIO()
                im.save(buf, "HEIF", quality=80, **options)
            path.write_bytes(buf.getvalue())
        files[name] = path
    return files


def heic(runs: int) -> list[dict]:
    """Each model-backed analyzer on the JPEG, on each HEIC decoded by the analysis itself (no
    rendition: `RENDITION_FORMATS=`), and on its rendition (what the service's analyses read);
    and the one-off cost of the rendition (decode + JPEG encode, once per image)."""
    from photos import face_photo

    from app.analyzers.base import ImageSource
    from app.analyzers.registry import build_registry
    from app.core.config import Settings
    from app.services.images.previews import render_rendition

    settings = Settings(_env_file=None, model_dir=ROOT / "models", onnx_threads=1)  # type: ignore[call-arg]
    registry = build_registry(settings)
    quality = settings.rendition_jpeg_quality
    jpeg = face_photo()
    sources: dict[str, Path] = {"JPEG": jpeg}
    rows = []
    for name, path in heic_files().items():
        sources[name] = path
        rendition = WORK_DIR / f"{path.stem}.rendition-q{quality}.jpg"
        wall, cpu = median_ms(lambda path=path: render_rendition(path, quality), max(3, runs // 3))
        rendition.write_bytes(render_rendition(path, quality))
        sizes = f"{path.stat().st_size / 1e6:.2f} MB -> {rendition.stat().st_size / 1e6:.2f} MB"
        rows.append(
            {
                "case": f"rendition of {name} ({sizes})",
                "ms": wall,
                "cpu_ms": cpu,
            }
        )
        sources[f"{name}, its rendition"] = rendition
    for analyzer_name in ("face", "classify", "skin-measure"):
        analyzer = registry.get(analyzer_name)
        params = analyzer.params_model()
        base = None
        for name, path in sources.items():
            source = ImageSource("bench", path)
            n = runs if "rendition" in name or name == "JPEG" else max(3, runs // 3)
            wall, cpu = median_ms(lambda a=analyzer, s=source, p=params: a.analyze(s, p), n)
            base = cpu if base is None else base
            label = f"{analyzer_name}, 12 MP {name} ({path.stat().st_size / 1e6:.2f} MB)"
            rows.append({"case": label, "ms": wall, "cpu_ms": cpu, "cpu_vs_jpeg": cpu / base})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--only", choices=["hash", "48mp", "heic"], help="one part only")
    args = parser.parse_args()
    rows = []
    if args.only in (None, "hash"):
        rows += hashing(args.runs * 4)
    if args.only in (None, "48mp"):
        rows += decoding(args.runs)
    if args.only in (None, "heic"):
        rows += heic(args.runs)
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
    report(WORK_DIR / "phone.json", rows, {"runs": args.runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
