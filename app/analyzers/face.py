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

Regions and alignment are pure geometry on the landmarks (`app.analyzers.face_regions`).

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
from app.analyzers.face_regions import REGION_NAMES, FaceBox, FaceResult, face_contours
from app.analyzers.imaging import load_gray, to_gray
from app.analyzers.segmentation import SegmentationResult, segmentation_contours
from app.analyzers.svg import Point
from app.core.errors import FaceTooSmall, NoFaceDetected

__all__ = ["REGION_NAMES", "FaceAnalyzer", "FaceBox", "FaceParams", "FaceResult"]

LandmarksModel = Literal["68", "5"]

MODEL_FILES: dict[str, str] = {
    "68": "shape_predictor_68_face_landmarks.dat",
    "5": "shape_predictor_5_face_landmarks.dat",
}


class FaceParams(BaseModel):
    """Params of the `face` analyzer."""

    model_config = ConfigDict(extra="forbid")

    margin: float = Field(
        0.3, ge=0.0, le=1.0, description="Crop margin on each side, as a fraction of the face size"
    )
    min_face_px: int = Field(
        80, ge=1, le=10_000, description="Smallest accepted face (shorter side of its box, in pixels)"
    )


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
    model_backed: ClassVar[bool] = True
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
