"""The table of docs/skin-methods.md ("Skin of every tone"): the astronaut's face recoloured to
each Monk swatch (tests/analyzers/skin_measure/monk_faces.py), measured by `skin-measure`, and
the same photos one and two stops under- and over-exposed; with `--clipping`, the calibration
of SKIN_MAX_CLIPPED_FRACTION ("Clipping"): the share of skin pixels with a channel >= 250 (the
former measure) and saturated (255, the gate's) as taken and 0.5-2 stops over, and the answer.

Usage: .venv/bin/python scripts/skin_tone_table.py [--clipping]   (MODEL_DIR as the service reads it)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.analyzers.face.mesh_backend import DecodedImage, decode, find_face  # noqa: E402
from app.analyzers.face.mesh_models import FaceMesh  # noqa: E402
from app.analyzers.skin_measure.analyzer import SkinMeasureAnalyzer  # noqa: E402
from app.analyzers.skin_measure.color import MONK_HEX, MONK_LAB, ita  # noqa: E402
from app.analyzers.skin_measure.frame import canonical_frame, region_masks  # noqa: E402
from app.analyzers.skin_measure.models import SkinMeasureParams  # noqa: E402
from app.core.config import Settings  # noqa: E402
from app.core.errors import AppError  # noqa: E402
from tests.analyzers.skin_measure.monk_faces import monk_face  # noqa: E402
from tests.analyzers.skin_measure.test_skin_tones import exposed  # noqa: E402

PARAMS = SkinMeasureParams(overlay=False)


def skin_pixels(analyzer: SkinMeasureAnalyzer, decoded: DecodedImage) -> np.ndarray:
    """The (n, 3) sRGB pixels of the measured skin regions in the canonical frame, as the gate sees them."""
    gate = analyzer.gate
    face = find_face(analyzer.mesh, decoded, gate.min_face_px, "auto", gate.other_face_ratio)
    mesh = face.mesh / decoded.scale
    frame = canonical_frame(decoded.image, mesh)
    area = np.logical_or.reduce(list(region_masks(frame, mesh).values()))
    return frame.rgb[area]


def clipping(analyzer: SkinMeasureAnalyzer, faces: dict[int, Image.Image]) -> None:
    """Print the clipping table: the astronaut (0) and the swatches, as taken and over-exposed."""
    print("| photo | EV | a channel >= 250 (before) | a channel at 255 (now) | answer |")
    print("|---|---|---|---|---|")
    for k, face in faces.items():
        for ev in (0, 0.5, 1, 2):
            photo = exposed(face, ev) if ev else face
            try:
                px = skin_pixels(analyzer, decode(photo)).max(axis=1)
                cells = f"{np.mean(px >= 250):.2f} | {np.mean(px >= 255):.2f}"
            except AppError:
                cells = "- | -"
            try:
                answer = f"measured (Monk {analyzer.measure(photo, PARAMS).metrics.tone.monk})"
            except AppError as exc:
                eyes = exc.extra.get("eye_white")
                answer = f"`{exc.code}`" + (f" (eyes' whites L* {eyes:.0f})" if eyes and eyes > 90 else "")
            print(f"| {'astronaut' if k == 0 else f'Monk {k}'} | {ev:+g} | {cells} | {answer} |", flush=True)


def main() -> None:
    """Print the two markdown tables (or, with --clipping, the clipping table)."""
    mesh = FaceMesh(Settings().model_dir)
    analyzer = SkinMeasureAnalyzer(mesh)
    astronaut = Image.fromarray(data.astronaut())
    faces = {k: monk_face(mesh, astronaut, k) for k in range(1, 11)}
    if "--clipping" in sys.argv[1:]:
        clipping(analyzer, {0: astronaut, **faces})
        return
    print(
        "| swatch | swatch L* | swatch ITA° | measured ITA° | category | Monk found (ΔE) | skin L* "
        "| eyes' whites L* | highlights L* | sharpness |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for k, face in faces.items():
        r = analyzer.measure(face, PARAMS)
        t, q = r.metrics.tone, r.quality
        sw = MONK_LAB[k - 1]
        swatch = f"| {k} `{MONK_HEX[k - 1]}` | {sw[0]:.1f} | {ita(sw[0], sw[2]):.1f} "
        print(
            f"{swatch}| {t.value:.1f} | {t.category} "
            f"| {t.monk} ({t.monk_delta_e:.1f}) | {t.lab[0]:.1f} | {q.eye_white:.1f} | {q.highlights:.1f} "
            f"| {q.sharpness:.0f} |"
        )
    print()
    stops = (-3, -2, -1, 1, 2)
    print("| swatch | " + " | ".join(f"{ev:+d} EV" for ev in stops) + " |")
    print("|---|" + "---|" * len(stops))
    for k in (1, 3, 5, 7, 9, 10):
        cells = []
        for ev in stops:
            try:
                tone = analyzer.measure(exposed(faces[k], ev), PARAMS).metrics.tone
                cells.append(f"Monk {tone.monk}, ITA° {tone.value:.0f}")
            except AppError as exc:
                cells.append(f"`{exc.code}`")
        print(f"| {k} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
