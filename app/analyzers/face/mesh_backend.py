"""The most confident face of an image by BlazeFace + Face Mesh, in original pixels.

Images are decoded with `load_rgb_reduced(source, DECODE_LONG_SIDE)` (960): a 4000x3000 JPEG is
decoded at 1/4 (1000x750), which keeps a face big enough for the 128-px detector and the
192-px mesh crop while decoding 3-4x faster; points are then scaled back by the reduction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from app.analyzers.face.mesh_models import MIN_PRESENCE, FaceMesh
from app.analyzers.face.regions import FaceBox
from app.analyzers.imaging import load_rgb_reduced, to_rgb
from app.core.errors import FaceTooSmall, NoFaceDetected

DECODE_LONG_SIDE = 960


@dataclass(frozen=True)
class MeshFace:
    """One face: its box (clipped, original px), size, score, mesh and the other faces found."""

    box: FaceBox
    size_px: float  # shorter side of the detector's box, original pixels
    score: float
    mesh: np.ndarray  # (468, 3) original pixels; z in the scale of x
    other_sizes: tuple[float, ...]  # shorter sides of the other detected faces, original pixels


@dataclass(frozen=True)
class DecodedImage:
    """An upright RGB image and its reduction (original pixels per decoded pixel)."""

    image: Image.Image
    scale: float

    @property
    def original_size(self) -> tuple[int, int]:
        """The (approximate, within one reduction step) size of the original image."""
        return round(self.image.width * self.scale), round(self.image.height * self.scale)


def decode(source: Path | bytes | Image.Image) -> DecodedImage:
    """A stored image (path or bytes) decoded for the face models, or an image as it is."""
    if isinstance(source, Image.Image):
        return DecodedImage(to_rgb(source), 1.0)
    image, scale = load_rgb_reduced(source, DECODE_LONG_SIDE)
    return DecodedImage(image, scale)


def find_face(mesh: FaceMesh, decoded: DecodedImage, min_face_px: int) -> MeshFace:
    """The most confident face and its mesh; NoFaceDetected or FaceTooSmall (with `face_px`)."""
    detections = mesh.detect(decoded.image)
    if not detections:
        raise NoFaceDetected()
    k = decoded.scale
    sizes = [float(min(d.box[2] - d.box[0], d.box[3] - d.box[1])) * k for d in detections]
    best = detections[0]
    if sizes[0] < min_face_px:
        raise FaceTooSmall(
            f"The face is {sizes[0]:.0f} px, smaller than the minimum of {min_face_px} px",
            extra={"face_px": round(sizes[0]), "min_face_px": min_face_px},
        )
    points, presence = mesh.landmarks(decoded.image, best)
    if presence < MIN_PRESENCE:
        raise NoFaceDetected()
    w, h = decoded.original_size
    x0, y0, x1, y1 = (float(v) * k for v in best.box)
    bx0, by0 = min(w, max(0, round(x0))), min(h, max(0, round(y0)))
    bx1, by1 = min(w, max(0, round(x1))), min(h, max(0, round(y1)))
    box = FaceBox(x=bx0, y=by0, width=max(0, bx1 - bx0), height=max(0, by1 - by0))
    return MeshFace(box, sizes[0], best.score, points * k, tuple(sizes[1:]))
