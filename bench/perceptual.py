"""Precision of perceptual reuse: PDQ (the service's hash) against imagehash's pHash, on pairs
built from scikit-image's photos, and the CPU a hash adds to an upload.

Positive pairs (the same photo): the original (PNG-lossless source, saved as JPEG q95) against
its re-encodings at JPEG quality 90/75/60/40/20, resizes to 75/50/25 % (q85), and crops of
1/2/5/10 % off every side (q85). Negative pairs: every pair of different photos (scikit-image's
photos plus the 200 faces of its LFW subset, upscaled to 200 px; the stereo motorcycle pair
and the two chessboards are the hardest). For each threshold: how many positives match
(recall) and how many negatives do (must be none at the default).

    .venv/bin/python bench/perceptual.py            # --no-phash to skip the comparison

pHash needs `imagehash` (not a service dependency): `pip install imagehash` to compare.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.services.images.perceptual import MIN_QUALITY, distance, hash_image  # noqa: E402
from bench.photos import upload_image  # noqa: E402

PHOTOS = (
    "astronaut chelsea coffee rocket camera coins moon page text brick grass gravel "
    "hubble_deep_field retina immunohistochemistry motorcycle_left motorcycle_right cell "
    "clock horse logo colorwheel microaneurysms chessboard_gray chessboard_rgb"
).split()
QUALITIES = (90, 75, 60, 40, 20)
SCALES = (0.75, 0.5, 0.25)
CROPS = (0.01, 0.02, 0.05, 0.10)
PDQ_THRESHOLDS = (8, 12, 15, 20, 24, 31)
PHASH_THRESHOLDS = (2, 4, 6, 8, 10, 12)


def _rgb(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8:
        array = np.clip(array * (255 if array.max() <= 1.0 else 1), 0, 255).astype(np.uint8)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return Image.fromarray(np.ascontiguousarray(array[..., :3]), "RGB")


def sources() -> dict[str, Image.Image]:
    from skimage import data

    found = {}
    for name in PHOTOS:
        if name.startswith("motorcycle_"):
            left, right, _ = data.stereo_motorcycle()
            image = _rgb(left if name.endswith("left") else right)
        else:
            image = _rgb(getattr(data, "checkerboard" if name.startswith("chessboard") else name)())
        if name == "chessboard_rgb":  # a coloured twin of the grey one
            half = image.getchannel(1).point(lambda v: v // 2)
            image = Image.merge("RGB", (image.getchannel(0), half, image.getchannel(2)))
        found[name] = image
    faces = data.lfw_subset()
    for i, face in enumerate(faces):
        found[f"lfw{i:03d}"] = _rgb(face).resize((200, 200), Image.Resampling.BICUBIC)
    return found


def jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def variants(image: Image.Image) -> dict[str, bytes]:
    out = {f"jpeg q{q}": jpeg(image, q) for q in QUALITIES}
    for s in SCALES:
        size = (max(16, round(image.width * s)), max(16, round(image.height * s)))
        out[f"resize {s:.0%}"] = jpeg(image.resize(size, Image.Resampling.LANCZOS), 85)
    for c in CROPS:
        dx, dy = round(image.width * c), round(image.height * c)
        out[f"crop {c:.0%}/side"] = jpeg(image.crop((dx, dy, image.width - dx, image.height - dy)), 85)
    return out


def phash(data: bytes) -> str:
    import imagehash

    return str(imagehash.phash(Image.open(io.BytesIO(data))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-phash", action="store_true")
    args = parser.parse_args()
    use_phash = not args.no_phash
    if use_phash:
        try:
            import imagehash  # noqa: F401
        except ImportError:
            print("imagehash not installed: pHash skipped", file=sys.stderr)
            use_phash = False
    images = sources()
    originals = {name: jpeg(image, 95) for name, image in images.items()}
    pdq = {name: hash_image(data) for name, data in originals.items()}
    low = sorted(name for name, h in pdq.items() if h.quality < MIN_QUALITY)
    print(f"{len(images)} photos ({len(PHOTOS)} scikit-image photos, {len(images) - len(PHOTOS)} LFW faces)")
    print(f"PDQ quality < {MIN_QUALITY} (hash not kept, never reused): {len(low)}: {', '.join(low[:12])}")
    ph = {name: phash(data) for name, data in originals.items()} if use_phash else {}

    # positives: the scikit-image photos (the LFW faces are 25 px sources: negatives only)
    by_kind: dict[str, list[tuple[int, int | None]]] = {}
    for name in PHOTOS:
        if pdq[name].quality < MIN_QUALITY:
            continue
        for kind, data in variants(images[name]).items():
            h = hash_image(data)
            d_pdq = distance(pdq[name].hex, h.hex) if h.quality >= MIN_QUALITY else 256
            d_ph = distance(ph[name], phash(data)) if use_phash else None
            by_kind.setdefault(kind, []).append((d_pdq, d_ph))
    kept = [n for n in images if pdq[n].quality >= MIN_QUALITY]
    negatives = [
        (distance(pdq[a].hex, pdq[b].hex), distance(ph[a], ph[b]) if use_phash else None, a, b)
        for a, b in combinations(kept, 2)
    ]
    print(f"{sum(len(v) for v in by_kind.values())} positive pairs, {len(negatives)} negative pairs")

    def table(label: str, idx: int, thresholds: tuple[int, ...], bits: int) -> None:
        print(f"\n{label} ({bits} bits): distance of the same photo (median / max), matches per threshold")
        print("| pair | median | max | " + " | ".join(f"≤{t}" for t in thresholds) + " |")
        print("|---|---|---|" + "---|" * len(thresholds))
        for kind, values in by_kind.items():
            ds = [v[idx] for v in values]
            hits = [f"{sum(d <= t for d in ds)}/{len(ds)}" for t in thresholds]
            print(f"| {kind} | {statistics.median(ds):.0f} | {max(ds)} | " + " | ".join(hits) + " |")
        neg = sorted(n[idx] for n in negatives)
        hits = [str(sum(d <= t for d in neg)) for t in thresholds]
        print(
            f"| different photos (min {neg[0]}, 0.1% {neg[len(neg) // 1000]}) "
            f"| {statistics.median(neg):.0f} | {neg[-1]} | " + " | ".join(hits) + " |"
        )
        closest = sorted(negatives, key=lambda n: n[idx])[:5]
        print(
            "closest different photos: "
            + ", ".join(f"{a}/{b} {n[idx]}" for *n, a, b in [(x[0], x[1], x[2], x[3]) for x in closest])
        )

    table("PDQ", 0, PDQ_THRESHOLDS, 256)
    if use_phash:
        table("pHash", 1, PHASH_THRESHOLDS, 64)

    print("\nCPU per hash (process time, median of 20), the upload test JPEGs:")
    for size in ("100k", "1m", "5m"):
        data = upload_image(size).read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            dims = f"{im.width}x{im.height}"
        row = [f"{size} ({dims})"]
        fns = [("PDQ", lambda data=data: hash_image(data))]
        if use_phash:
            fns.append(("pHash", lambda data=data: phash(data)))
        for label, fn in fns:
            times = []
            for _ in range(20):
                t0 = time.process_time()
                fn()
                times.append(time.process_time() - t0)
            row.append(f"{label} {statistics.median(times) * 1000:.1f} ms")
        print("  " + ", ".join(row))


if __name__ == "__main__":
    main()
