"""Face detection by size: the share of faces found, per face size and background photo.

Each cell pastes the astronaut's face (bench/face_scenes.py) at `--runs` seeded random places
on a scikit-image photo of 4000x3000 (the face box a given share of the long side), encodes
it as a JPEG and runs the `face` pipeline's detection (`mesh_backend.decode` at
`--long-side`, default DETECT_LONG_SIDE as `face` does, + `find_faces`: whole image and tiles,
each face confirmed by the mesh) on the bytes. A face counts as
found when a detection's centre lies in the true face box and its size is within 0.5-2x.
Also: false faces on every bundled non-face photo (at 2000 px and as it is); a group photo.
Usage: `.venv/bin/python bench/face_range.py [--runs 8] [--sizes 0.05,0.08] [--table-only]
[--scan all|whole] [--old] [--heic]` (`--table-only`: no group photo and no false-face check, to
split the sizes over processes; `--scan whole`: the whole image alone, each face confirmed by the
mesh: what `find_faces(scan="auto")` relies on when it skips the tiles (WHOLE_MIN_FRACTION);
`--old`: the full-range detector alone on the whole image, no tiles and no mesh check; `--heic`:
each photo encoded as an iPhone-like HEIC at the same quality instead, detected on its full-size
JPEG rendition, `RENDITION_JPEG_QUALITY`, as the service's analyses are).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from face_scenes import BACKGROUNDS, NON_FACE, background, jpeg, scene  # noqa: E402

from app.analyzers.face.mesh_backend import DETECT_LONG_SIDE, decode, find_faces  # noqa: E402
from app.analyzers.face.mesh_models import FaceMesh  # noqa: E402
from app.core.config import Settings  # noqa: E402
from app.services.images.previews import render_rendition  # noqa: E402

WORK_DIR = ROOT / "bench" / ".work"

SIZES = (0.03, 0.04, 0.05, 0.06, 0.08, 0.12, 0.2, 0.4)


def matched(dets: list, box: tuple[float, float, float, float], scale: float) -> bool:
    """Whether one of `dets` (decoded pixels) is the face `box` (original pixels)."""
    x0, y0, x1, y1 = box
    for d in dets:
        bx = getattr(d, "detection", d).box * scale
        cx, cy = (bx[0] + bx[2]) / 2, (bx[1] + bx[3]) / 2
        ratio = (bx[2] - bx[0]) / (x1 - x0)
        if x0 <= cx <= x1 and y0 <= cy <= y1 and 0.5 <= ratio <= 2:
            return True
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--size", default="4000x3000")
    parser.add_argument("--old", action="store_true", help="the detector alone, whole image, no mesh check")
    parser.add_argument("--scan", choices=("all", "whole"), default="all", help="find_faces' scan")
    parser.add_argument("--long-side", type=int, default=DETECT_LONG_SIDE, help="decode's long side")
    parser.add_argument("--heic", action="store_true", help="HEIC photos, detected on their rendition")
    parser.add_argument("--table-only", action="store_true", help="no group photo, no false-face check")
    parser.add_argument(
        "--sizes", default=",".join(map(str, SIZES)), help="face / long side, comma-separated"
    )
    args = parser.parse_args()
    w, h = map(int, args.size.split("x"))
    mesh = FaceMesh(ROOT / "models")
    fmt = "HEIF" if args.heic else "JPEG"
    WORK_DIR.mkdir(exist_ok=True)

    def detect(data: bytes) -> tuple[list, float]:
        if args.heic:  # the HEIC the encoder made, then the rendition the service would make
            path = WORK_DIR / "face-range.heic"
            path.write_bytes(data)
            data = render_rendition(path, Settings(_env_file=None).rendition_jpeg_quality)  # type: ignore[call-arg]
        decoded = decode(data, args.long_side)
        if args.old:
            return mesh.detect(decoded.image), decoded.scale
        return find_faces(mesh, decoded, 1, args.scan), decoded.scale

    print(f"| face / long side | {' | '.join(BACKGROUNDS)} | all |")
    print("|---" * (len(BACKGROUNDS) + 2) + "|")
    for frac in map(float, args.sizes.split(",")):
        cells, total = [], 0
        for bg in BACKGROUNDS:
            hits = 0
            for seed in range(args.runs):
                image, boxes = scene(bg, (w, h), 1, frac, seed)
                dets, k = detect(jpeg(image, seed=seed, fmt=fmt))
                hits += matched(dets, boxes[0], k)
            cells.append(f"{hits}/{args.runs}")
            total += hits
        n = args.runs * len(BACKGROUNDS)
        print(
            f"| {frac:.0%} ({frac * max(w, h):.0f} px) | {' | '.join(cells)} | {total / n:.0%} |", flush=True
        )
    if args.table_only:
        return 0
    group = []
    for bg in BACKGROUNDS:
        image, boxes = scene(bg, (1600, 900), 4, 150 / 1600, 7)
        dets, k = detect(jpeg(image, seed=7, fmt=fmt))
        group.append(f"{sum(matched(dets, b, k) for b in boxes)}/4 ({len(dets)} found)")
    print(f"| group, 4 faces of 150 px in 1600x900 | {' | '.join(group)} | |")
    false = []
    for name in NON_FACE:
        for size in ((2000, 1500), None):
            img = background(name, size) if size else None
            data = jpeg(img, fmt=fmt) if img is not None else None
            if data is None:
                from face_scenes import photo

                data = jpeg(photo(name), fmt=fmt)
            dets, _ = detect(data)
            if dets:
                false.append(f"{name}{'@2000' if size else ''}: {len(dets)}")
    print(f"\nfalse faces on {len(NON_FACE)} non-face photos (x2 sizes): {false or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
