"""The faces of an image by BlazeFace (full range) + Face Mesh, in original pixels.

Two decodes (`load_rgb_reduced`: a JPEG reduced while decoding by 2, 4 or 8):

- `DETECT_LONG_SIDE` (427 = 192 / 0.45): the least the detector needs, the whole image and
  tiles of 0.45 of the long side each being >= its 192-px input; a 12 MP JPEG decodes at 1/8
  (500x375), ~25 % cheaper than at 1/4 (the entropy decoding, ~34 ms of CPU for a 2.3 MB JPEG
  here, is paid at any reduction). The `face` analyzer uses it.
- `DECODE_LONG_SIDE` (960): a 12 MP JPEG at 1/4, for `skin-measure`, whose canonical frame
  is cut from the decoded pixels.

Every detection is confirmed by the mesh's face-presence score (the detector's rare false
faces on textures score < 0.05 there, real faces ~1.0). The face chosen is the largest;
`other_sizes` lists the others, so that a group photo is counted.

Scans (`find_faces`): `"all"` runs the whole image and the overlapping tiles; `"auto"` runs the
whole image and the tiles only when a face that matters could be one that only the tiles find.
The whole image alone found every face of WHOLE_MIN_FRACTION (15 %) of the long side (40 of 40;
12 %: 92 %, 10 %: 82 %; `bench/face_range.py --scan whole`), so the tiles are skipped when the
smallest face that would count (`count_px`: the largest face found x `count_ratio`, at
least `min_face_px`) is at least that large: for `face`, a face larger than the largest found
(ratio 1); for `skin-measure`, another face of at least SKIN_OTHER_FACE_RATIO of the measured
one. When the tiles do run, the whole image's detections are not computed again.

The mesh wants its region of interest (1.5x the face box) at no less than MESH_MIN_ROI (144)
px: where the decode gives it fewer (a small face in a big JPEG), the image is decoded again at
the reduction that gives 192 (`mesh_image`), up to full resolution, and the mesh runs on a crop
of that; its points are then scaled back to original pixels like the rest. (On the astronaut,
an ROI of 160 px gives the points of a 192-px one within 0.1 % of the inter-ocular distance,
128 px within 0.25 %.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from app.analyzers.face.mesh_models import (
    DET_SIZE,
    MESH_SIZE,
    MIN_PRESENCE,
    ROI_SCALE,
    TILE_FRACTION,
    Detection,
    FaceMesh,
)
from app.analyzers.face.regions import FaceBox
from app.analyzers.imaging import load_rgb_reduced, to_rgb
from app.core.errors import FaceTooSmall, NoFaceDetected

DECODE_LONG_SIDE = 960
DETECT_LONG_SIDE = math.ceil(DET_SIZE / TILE_FRACTION)  # 427: every tile >= the detector's input
MESH_MIN_ROI = 144  # a face's region under this (decoded px) gets a finer decode for the mesh
WHOLE_MIN_FRACTION = 0.15  # the whole image alone found every face of this share of the long side
Scan = Literal["all", "auto", "whole"]


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
    """An upright RGB image, its reduction (original pixels per decoded pixel) and, for a
    finer decode of a small face, the stored image it came from (None: the image as given)."""

    image: Image.Image
    scale: float
    source: Path | bytes | None = None

    @property
    def original_size(self) -> tuple[int, int]:
        """The (approximate, within one reduction step) size of the original image."""
        return round(self.image.width * self.scale), round(self.image.height * self.scale)


def decode(source: Path | bytes | Image.Image, long_side: int = DECODE_LONG_SIDE) -> DecodedImage:
    """A stored image (path or bytes) decoded for the face models, or an image as it is."""
    if isinstance(source, Image.Image):
        return DecodedImage(to_rgb(source), 1.0)
    image, scale = load_rgb_reduced(source, long_side)
    return DecodedImage(image, scale, source)


def mesh_image(
    decoded: DecodedImage, det: Detection, cache: dict[float, DecodedImage] | None = None
) -> tuple[DecodedImage, Detection]:
    """The decode the mesh should run on for `det` (its ROI at >= 192 px where the stored image
    has the pixels), and `det` in that decode's pixels; `cache` keeps finer decodes by long side."""
    box = det.box
    roi_px = float(max(box[2] - box[0], box[3] - box[1])) * ROI_SCALE  # decoded pixels
    if decoded.source is None or decoded.scale <= 1 or roi_px >= MESH_MIN_ROI:
        return decoded, det
    long_side = math.ceil(max(decoded.original_size) * MESH_SIZE / (roi_px * decoded.scale))
    cache = {} if cache is None else cache
    # Decodes come in steps of 2: key by the step so that faces of a group share one.
    step = 2 ** max(0, math.floor(math.log2(max(decoded.original_size) / long_side)))
    if step not in cache:
        cache[step] = decode(decoded.source, math.ceil(max(decoded.original_size) / step))
    finer = cache[step]
    if finer.scale >= decoded.scale:
        return decoded, det
    f = decoded.scale / finer.scale
    return finer, replace(det, box=det.box * f, keypoints=det.keypoints * f)


@dataclass(frozen=True)
class FoundFace:
    """A detection the mesh confirmed: the detection (decoded pixels), its size (shorter side,
    original pixels) and its 468 mesh points (original pixels)."""

    detection: Detection
    size_px: float
    mesh: np.ndarray


def find_faces(
    mesh: FaceMesh, decoded: DecodedImage, min_face_px: int, scan: Scan = "all", count_ratio: float = 1.0
) -> list[FoundFace]:
    """The faces of `decoded`, largest first: each detection is confirmed by the mesh's face
    presence (>= 0.5; on photos without a face, the detector's rare false faces score < 0.05).
    `scan="all"`: the whole image and the tiles; `"whole"`: the whole image only; `"auto"`: the
    tiles only when the whole image shows no face, or when a face that counts (at least
    `min_face_px` and `count_ratio` x the largest found, original pixels) could be smaller than
    the whole image alone finds for sure (WHOLE_MIN_FRACTION of the long side)."""
    cache: dict[float, DecodedImage] = {}

    def confirmed(dets: list[Detection]) -> list[FoundFace]:
        out = []
        for d in dets:
            fine, fine_det = mesh_image(decoded, d, cache)
            points, presence = mesh.landmarks(fine.image, fine_det)
            if presence >= MIN_PRESENCE:
                out.append(FoundFace(d, _short_side(d) * decoded.scale, points * fine.scale))
        return sorted(out, key=lambda f: -f.size_px)

    whole = mesh.detect(decoded.image)
    if scan != "all":
        found = confirmed(whole)
        if scan == "whole" or (found and count_px(found, min_face_px, count_ratio) >= whole_min_px(decoded)):
            return found
    return confirmed(mesh.detect(decoded.image, tiles=True, whole=whole))


def count_px(faces: list[FoundFace], min_face_px: int, ratio: float) -> float:
    """The smallest face that counts beside the largest of `faces` (original pixels)."""
    return max(float(min_face_px), ratio * faces[0].size_px)


def whole_min_px(decoded: DecodedImage) -> float:
    """The smallest face the whole-image pass alone is sure to find in `decoded` (original px)."""
    return WHOLE_MIN_FRACTION * max(decoded.original_size)


def _short_side(det: Detection) -> float:
    return float(min(det.box[2] - det.box[0], det.box[3] - det.box[1]))


def find_face(
    mesh: FaceMesh, decoded: DecodedImage, min_face_px: int, scan: Scan = "all", count_ratio: float = 1.0
) -> MeshFace:
    """The largest face and its mesh, with the sizes of the others (`find_faces`);
    NoFaceDetected, or FaceTooSmall (with `face_px` and `min_face_px`)."""
    faces = find_faces(mesh, decoded, min_face_px, scan, count_ratio)
    if not faces:
        raise NoFaceDetected()
    best = faces[0]
    if best.size_px < min_face_px:
        raise FaceTooSmall(
            f"The face is {best.size_px:.0f} px, smaller than the minimum of {min_face_px} px",
            extra={"face_px": round(best.size_px), "min_face_px": min_face_px},
        )
    k = decoded.scale
    w, h = decoded.original_size
    x0, y0, x1, y1 = (float(v) * k for v in best.detection.box)
    bx0, by0 = min(w, max(0, round(x0))), min(h, max(0, round(y0)))
    bx1, by1 = min(w, max(0, round(x1))), min(h, max(0, round(y1)))
    box = FaceBox(x=bx0, y=by0, width=max(0, bx1 - bx0), height=max(0, by1 - by0))
    others = tuple(f.size_px for f in faces[1:])
    return MeshFace(box, best.size_px, best.detection.score, best.mesh, others)
