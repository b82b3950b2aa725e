"""Face geometry from landmarks: eye-level alignment, the aligned crop and SVG region contours.

Regions (iBUG 300-W 68-point indexing, named from the *subject's* point of view, so the
subject's right eye is on the image's left):

- `face_oval`: jaw 0-16 closed by an elliptical arc over the forehead, from point 16
  back to point 0, whose height above the 0-16 line is 0.6 x the depth of the chin
  (point 8) below it, raised where needed so that the arc clears both eyebrows. The
  landmarks do not reach the hairline; the arc is an approximation of it.
- `right_eyebrow` 17-21, `left_eyebrow` 22-26: the points trace the brow's upper edge; the
  region closes with a lower edge offset downwards (in the aligned frame) by a third of
  the brow-to-eye distance, tapered at both ends.
- `right_eye` 36-41, `left_eye` 42-47; `nose`: the closed outline 27 (top of the bridge),
  31-35 (base, from the image-left nostril to the image-right one) back to 27; the bridge
  points 28-30 lie inside it; `outer_lips` 48-59, `inner_lips` 60-67.

Every region is one closed SVG path (M/L/Z, 2 decimals) in the aligned crop's coordinates.
The mesh backend adds `mesh_regions` (forehead, cheeks, under-eye, chin, nose bridge; see
`mesh_regions`) mapped through the same transform, and the head pose; neither is in the SVG.

Alignment: the rotation that levels the eye centres (means of points 36-41 and 42-47),
then a square crop around the face regions with `margin` of their size on each side. No
rotated bitmap is produced: the regions are the landmark polygons mapped through the same
rotation + crop (`FaceResult.transform` is that affine map, original -> crop).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field

from app.analyzers.face.segmentation import Size
from app.analyzers.svg import closed_path, svg_document

# Region name -> landmark indices (iBUG 300-W), subject's point of view.
REGION_NAMES: tuple[str, ...] = (
    "face_oval",
    "left_eyebrow",
    "right_eyebrow",
    "left_eye",
    "right_eye",
    "nose",
    "outer_lips",
    "inner_lips",
)
JAW = tuple(range(0, 17))
RIGHT_EYEBROW = tuple(range(17, 22))
LEFT_EYEBROW = tuple(range(22, 27))
NOSE_OUTLINE = (27, 31, 32, 33, 34, 35)
RIGHT_EYE = tuple(range(36, 42))
LEFT_EYE = tuple(range(42, 48))
OUTER_LIPS = tuple(range(48, 60))
INNER_LIPS = tuple(range(60, 68))

FOREHEAD_RATIO = 0.6  # forehead arc height / chin depth, both from the 0-16 line
FOREHEAD_ARC_POINTS = 15
BROW_THICKNESS = 1 / 3  # of the brow-to-eye distance
_BROW_TAPER = (0.5, 1.0, 1.0, 1.0, 0.5)
# 5-point model: face extent around the eye midpoint, in units of the eye distance.
_FIVE_POINT_EXTENT = (-1.1, -1.1, 1.1, 1.9)  # left, top, right, bottom


class FaceBox(BaseModel):
    """An axis-aligned box in original image pixels."""

    x: int
    y: int
    width: int
    height: int


class Landmark(BaseModel):
    """One landmark in original image pixels."""

    x: float
    y: float


class HeadPose(BaseModel):
    """Head pose from the face mesh, degrees (see `mesh_regions.head_pose`)."""

    yaw: float = Field(description="> 0: the face turns towards the image's right")
    pitch: float = Field(description="> 0: the face tilts up")
    roll: float = Field(description="> 0: the head tilts counter-clockwise on screen")


class FaceResult(BaseModel):
    """Result of the `face` analyzer (and of `contours_from_landmarks`)."""

    face_box: FaceBox
    landmarks: list[Landmark] = Field(description="68 (or 5) points, original image coordinates")
    rotation_degrees: float = Field(
        description="In-plane tilt of the eye line, counter-clockwise on screen (PIL `rotate` sense); "
        "the aligned crop is the image rotated by minus this angle"
    )
    crop: Size
    transform: list[float] = Field(
        min_length=6,
        max_length=6,
        description="Affine map original -> crop: [a, b, c, d, e, f], x' = a x + b y + c, y' = d x + e y + f",
    )
    regions: dict[str, str] = Field(description="Region name -> closed SVG path d, crop coordinates")
    svg: str
    mesh_regions: dict[str, str] = Field(
        default_factory=dict,
        description="Finer regions of the face mesh (forehead, cheeks, under-eye, chin, nose bridge): "
        "closed SVG path d, crop coordinates; empty without a mesh",
    )
    head_pose: HeadPose | None = Field(default=None, description="From the face mesh; null without one")


# -- geometry (pure) ---------------------------------------------------------------------


def _eye_centres(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image-left eye, image-right eye) centres for 68- or 5-point landmarks."""
    if len(pts) == 68:
        return pts[list(RIGHT_EYE)].mean(axis=0), pts[list(LEFT_EYE)].mean(axis=0)
    # dlib 5-point: 0-1 image-right eye corners, 2-3 image-left eye corners, 4 nose base.
    return pts[2:4].mean(axis=0), pts[0:2].mean(axis=0)


def _forehead_arc(p0: np.ndarray, p16: np.ndarray, height: float) -> list[np.ndarray]:
    """Interior points of an elliptical arc from p16 over the top back to p0."""
    out = []
    for i in range(1, FOREHEAD_ARC_POINTS + 1):
        t = math.pi * i / (FOREHEAD_ARC_POINTS + 1)
        base = p16 + (p0 - p16) * (1 - math.cos(t)) / 2
        out.append(base - np.array([0.0, height * math.sin(t)]))
    return out


def _regions_68(a: np.ndarray) -> dict[str, np.ndarray]:
    """Region polygons from 68 aligned landmarks (eyes level, y down)."""
    p0, p16, p8 = a[0], a[16], a[8]
    line_y = (p0[1] + p16[1]) / 2
    height = FOREHEAD_RATIO * max(p8[1] - line_y, 1.0)
    # Clear the brows: at each brow point the arc must be above it (with 10% headroom).
    span = p16[0] - p0[0]
    for idx in RIGHT_EYEBROW + LEFT_EYEBROW:
        if abs(span) < 1e-6:
            break
        u = (a[idx][0] - p0[0]) / span  # 0 at p0, 1 at p16
        if 0.0 < u < 1.0:
            sin_t = math.sqrt(max(1 - (1 - 2 * u) ** 2, 1e-6))
            base_y = p0[1] + (p16[1] - p0[1]) * u
            need = (base_y - a[idx][1]) * 1.1 / sin_t
            height = max(height, need)
    oval = [a[i] for i in JAW] + _forehead_arc(p0, p16, height)

    def brow(idx: tuple[int, ...], eye: tuple[int, ...]) -> np.ndarray:
        upper = a[list(idx)]
        thickness = max(abs(a[list(eye)][:, 1].mean() - upper[:, 1].mean()) * BROW_THICKNESS, 1.0)
        lower = upper + np.array([[0.0, thickness * t] for t in _BROW_TAPER])
        return np.concatenate([upper, lower[::-1]])

    return {
        "face_oval": np.array(oval),
        "left_eyebrow": brow(LEFT_EYEBROW, LEFT_EYE),
        "right_eyebrow": brow(RIGHT_EYEBROW, RIGHT_EYE),
        "left_eye": a[list(LEFT_EYE)],
        "right_eye": a[list(RIGHT_EYE)],
        "nose": a[list(NOSE_OUTLINE)],
        "outer_lips": a[list(OUTER_LIPS)],
        "inner_lips": a[list(INNER_LIPS)],
    }


def face_contours(
    image_size: tuple[int, int],
    points: Sequence[tuple[float, float]],
    margin: float = 0.3,
    *,
    box: FaceBox | None = None,
    mesh_polygons: dict[str, np.ndarray] | None = None,
    head_pose: HeadPose | None = None,
) -> FaceResult:
    """The aligned regions, crop and SVG of a face from its 68 (or 5) landmarks; `mesh_polygons`
    (original pixels) are mapped into the same crop as `mesh_regions`."""
    pts = np.asarray(points, dtype=float).reshape(-1, 2) if len(points) else np.zeros((0, 2))
    if len(pts) not in (68, 5):
        raise ValueError(f"Expected 68 or 5 landmarks, got {len(pts)}")
    if not np.isfinite(pts).all():
        raise ValueError("Landmarks must be finite numbers")
    if not 0.0 <= margin <= 1.0:
        raise ValueError("margin must be within [0, 1]")
    left_eye, right_eye = _eye_centres(pts)
    dx, dy = right_eye - left_eye
    theta = math.atan2(dy, dx) if (dx or dy) else 0.0  # eye line angle, y down (clockwise on screen)
    centre = (left_eye + right_eye) / 2
    c, s = math.cos(-theta), math.sin(-theta)
    rot = np.array([[c, -s], [s, c]])
    aligned = (pts - centre) @ rot.T  # eye midpoint at the origin, eyes level

    if len(pts) == 68:
        polygons = _regions_68(aligned)
        extent_pts = np.concatenate(list(polygons.values()))
        x0, y0 = extent_pts.min(axis=0)
        x1, y1 = extent_pts.max(axis=0)
    else:
        polygons = {}
        eye_dist = math.hypot(dx, dy) or 1.0
        x0, y0, x1, y1 = (v * eye_dist for v in _FIVE_POINT_EXTENT)
    side = max(x1 - x0, y1 - y0, 1.0)
    crop_side = max(1, round(side * (1 + 2 * margin)))
    origin = np.array([(x0 + x1) / 2 - crop_side / 2, (y0 + y1) / 2 - crop_side / 2])

    regions = {name: closed_path([tuple(p) for p in polygons[name] - origin]) for name in polygons}
    regions = {name: regions[name] for name in REGION_NAMES if name in regions}
    mesh_regions = {
        name: closed_path([tuple(p) for p in (poly - centre) @ rot.T - origin])
        for name, poly in (mesh_polygons or {}).items()
    }
    t = -(rot @ centre) - origin
    transform = [
        float(rot[0, 0]),
        float(rot[0, 1]),
        float(t[0]),
        float(rot[1, 0]),
        float(rot[1, 1]),
        float(t[1]),
    ]

    if box is None:
        w, h = image_size
        bx0, by0 = np.clip(np.floor(pts.min(axis=0)), 0, [w, h]).astype(int)
        bx1, by1 = np.clip(np.ceil(pts.max(axis=0)), 0, [w, h]).astype(int)
        box = FaceBox(x=int(bx0), y=int(by0), width=int(bx1 - bx0), height=int(by1 - by0))
    rotation = -math.degrees(theta)
    return FaceResult(
        face_box=box,
        landmarks=[Landmark(x=float(x), y=float(y)) for x, y in pts],
        rotation_degrees=round(rotation + 0.0, 2),
        crop=Size(width=crop_side, height=crop_side),
        transform=[round(v, 6) + 0.0 for v in transform],
        regions=regions,
        svg=svg_document(crop_side, crop_side, regions),
        mesh_regions=mesh_regions,
        head_pose=head_pose,
    )
