"""The `skin-measure` analyzer: skin measured per face-mesh region, behind a quality gate.

Pipeline: decode upright RGB (a big JPEG reduced while decoding, `mesh_face.decode`); the
most confident face and its 468-point mesh; the quality gate (`skin_quality`); the face
resampled to the canonical frame (`skin_frame`: eyes level, fixed inter-ocular distance);
region masks (forehead, cheeks, under-eye, chin, nose bridge; eyes, brows, lips and nostrils
removed); colour in CIELAB after the white-balance check; the six measurements
(`skin_metrics`); the seed-shaped summary by the rules below; an SVG overlay of the
measured regions in image coordinates. Every number is rounded, so the same pixels give
the same bytes. Methods, references and limits: docs/skin-methods.md.

Summary rules (scores are 0-100):
- `skin_type`: Oily if the T-zone shine is >= 3% and the cheeks' >= 1.5%; else Combination
  if the T-zone's is >= 3%; else Sensitive if redness scores >= 60; else Dry if texture
  scores >= 60 with T-zone shine < 0.5%; else Normal.
- `issues` (the seed's names), at most 3, highest score first: Redness (redness), Dark
  circles (dark_circles), Hyperpigmentation (spots), Uneven texture (texture), each when its
  score is >= 50.
- `confidence`: 0.95, less 0.10 for a colour cast (0.05 when the white balance cannot be
  checked), less 0.05 for a face under twice the minimum size, less up to 0.10 as the head
  turns from 10° towards the gate's limit; clipped to [0.70, 0.99].
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image
from pydantic import BaseModel

from app.analyzers.base import ImageSource, ReuseScope
from app.analyzers.face.mesh_backend import DecodedImage, decode, find_face
from app.analyzers.face.mesh_models import FaceMesh
from app.analyzers.face.mesh_regions import head_pose, polygons
from app.analyzers.face.regions import HeadPose
from app.analyzers.skin_measure.color import srgb_to_lab, white_balance
from app.analyzers.skin_measure.frame import canonical_frame, eye_masks, region_masks
from app.analyzers.skin_measure.metrics import (
    dark_circles,
    prepare,
    redness,
    region_stats,
    shine,
    spots,
    texture,
    tone,
)
from app.analyzers.skin_measure.models import (
    ImageQuality,
    SkinMeasureParams,
    SkinMeasureResult,
    SkinMetrics,
    WhiteBalance,
)
from app.analyzers.skin_measure.quality import QualityGate
from app.analyzers.svg import closed_path, svg_document
from app.core.errors import NoFaceDetected

MAX_CAST = 6.0  # a*b* distance of the neutral pixels' median from neutral still called "ok"
REGION_COLOURS = {
    "forehead": "#e6194b",
    "right_cheek": "#3cb44b",
    "left_cheek": "#3cb44b",
    "right_under_eye": "#4363d8",
    "left_under_eye": "#4363d8",
    "chin": "#f58231",
    "nose_bridge": "#911eb4",
}
ISSUES: tuple[tuple[str, str], ...] = (
    ("Redness", "redness"),
    ("Dark circles", "dark_circles"),
    ("Hyperpigmentation", "spots"),
)
ISSUES += (("Uneven texture", "texture"),)


def summarize(metrics: SkinMetrics) -> tuple[str, list[str]]:
    """The seed-shaped skin type and issues of the measurements (rules: module docstring)."""
    t_zone, cheeks = metrics.shine.value, metrics.shine.cheeks
    if t_zone >= 3.0 and cheeks >= 1.5:
        skin_type = "Oily"
    elif t_zone >= 3.0:
        skin_type = "Combination"
    elif metrics.redness.score >= 60:
        skin_type = "Sensitive"
    elif metrics.texture.score >= 60 and t_zone < 0.5:
        skin_type = "Dry"
    else:
        skin_type = "Normal"
    scored = [(getattr(metrics, field).score, name) for name, field in ISSUES]
    issues = [name for score, name in sorted(scored, key=lambda s: (-s[0], s[1])) if score >= 50][:3]
    return skin_type, issues


def confidence(wb: str, face_px: float, pose: HeadPose, gate: QualityGate) -> float:
    """How far the photo is from ideal conditions, as a confidence in [0.70, 0.99]."""
    value = 0.95 - {"ok": 0.0, "unknown": 0.05}.get(wb, 0.10)
    if face_px < 2 * gate.min_face_px:
        value -= 0.05
    turn = max(abs(pose.yaw) / gate.max_yaw, abs(pose.pitch) / gate.max_pitch)
    value -= 0.10 * min(1.0, max(0.0, (turn * gate.max_yaw - 10.0) / max(1.0, gate.max_yaw - 10.0)))
    return round(min(0.99, max(0.70, value)), 2)


def overlay(mesh: np.ndarray, size: tuple[int, int]) -> str:
    """The measured regions as SVG paths over the image (image coordinates)."""
    width, height = size
    paths = {
        name: closed_path([(float(x), float(y)) for x, y in poly]) for name, poly in polygons(mesh).items()
    }
    attrs = {name: {"fill": c, "stroke": c, "fill-opacity": "0.35"} for name, c in REGION_COLOURS.items()}
    stroke = max(1.0, round(max(width, height) / 500, 2))
    return svg_document(width, height, paths, stroke_width=stroke, region_attrs=attrs)


def photo_lab(decoded: DecodedImage) -> np.ndarray:
    """CIELAB of every k-th pixel of the photo (k = long side // 128): enough for its percentiles."""
    image = decoded.image
    k = max(1, max(image.size) // 128)
    return srgb_to_lab(np.asarray(image, dtype=np.uint8)[::k, ::k])


def _white_balance(lab: np.ndarray) -> WhiteBalance:
    status, a, b = white_balance(lab, MAX_CAST)
    return WhiteBalance(
        status=status, a=None if a is None else round(a, 2), b=None if b is None else round(b, 2)
    )


class SkinMeasureAnalyzer:
    """The `skin-measure` analyzer (model-backed: the face mesh)."""

    name: ClassVar[str] = "skin-measure"
    version: ClassVar[str] = "mesh468-skin-3"
    description: ClassVar[str] = (
        "Measured skin analysis per face-mesh region (CIELAB): tone (ITA°, Monk), redness, shine, "
        "texture, dark circles, spots; refuses photos it cannot judge (quality gate)"
    )
    params_model: ClassVar[type[BaseModel]] = SkinMeasureParams
    model_backed: ClassVar[bool] = True
    reuse: ClassVar[ReuseScope] = "none"  # measured from these pixels, behind a quality gate
    result_model: ClassVar[type[BaseModel]] = SkinMeasureResult

    def __init__(self, mesh: FaceMesh, gate: QualityGate | None = None) -> None:
        self.mesh = mesh
        self.gate = gate or QualityGate()

    def analyze(self, source: ImageSource, params: BaseModel) -> BaseModel:
        """Measure the skin of the stored image's face."""
        p = (
            params
            if isinstance(params, SkinMeasureParams)
            else SkinMeasureParams.model_validate(params.model_dump())
        )
        return self.measure(source.path, p)

    def measure(self, source: Path | bytes | Image.Image, params: SkinMeasureParams) -> SkinMeasureResult:
        """Measure the skin of the most confident face (a path, bytes, or an image as it is)."""
        decoded = decode(source)
        try:
            face = find_face(
                self.mesh, decoded, self.gate.min_face_px, scan="auto", count_ratio=self.gate.other_face_ratio
            )
        except NoFaceDetected:
            self.gate.check_photo_exposure(photo_lab(decoded))
            raise
        yaw, pitch, roll = head_pose(face.mesh)
        pose = HeadPose(yaw=round(yaw, 2) + 0.0, pitch=round(pitch, 2) + 0.0, roll=round(roll, 2) + 0.0)
        self.gate.check_face(face, decoded.original_size, (yaw, pitch, roll))
        mesh = face.mesh / decoded.scale  # decoded pixels
        frame = canonical_frame(decoded.image, mesh)
        masks = region_masks(frame, mesh)
        photo = photo_lab(decoded)
        q = self.gate.check_pixels(frame, masks, eye_masks(frame, mesh), photo)
        wb = _white_balance(photo)
        skin = prepare(frame, masks)
        metrics = SkinMetrics(
            tone=tone(skin),
            redness=redness(skin),
            shine=shine(skin),
            texture=texture(skin),
            dark_circles=dark_circles(skin),
            spots=spots(skin, params.spot_min_delta_l),
        )
        skin_type, issues = summarize(metrics)
        quality = ImageQuality(
            face_px=round(face.size_px),
            head_pose=pose,
            sharpness=round(q.sharpness, 2),
            brightness=round(q.brightness, 2),
            clipped_fraction=round(q.clipped, 4),
            highlights=round(q.highlights, 2),
            eye_white=None if q.eye_white is None else round(q.eye_white, 2),
            white_balance=wb,
        )
        return SkinMeasureResult(
            skin_type=skin_type,
            issues=issues,
            confidence=confidence(wb.status, face.size_px, pose, self.gate),
            metrics=metrics,
            regions=region_stats(skin),
            face_box=face.box,
            quality=quality,
            svg=overlay(face.mesh, decoded.original_size) if params.overlay else None,
        )
