"""The canonical face frame of the skin measurements, region masks and small numpy filters.

Every measurement runs on the face resampled to one scale and orientation: a square of
`SIZE` x `SIZE` pixels in which the eye centres (means of the mesh's eye contours) are level,
`IOD` pixels apart, their midpoint at (SIZE / 2, EYE_Y). Textures, spots and sharpness are
thereby normalised by face scale (1 canonical pixel = IOD / 80 of the subject's face, about
0.8 mm for an adult's ~63 mm), and an in-plane rotation (EXIF or head roll) changes nothing.
The crop is taken as the mesh crop is (`facemesh.warp_roi`: integer box reduction, then a
bilinear warp), so it is deterministic. Region masks (and the eye masks of the quality gate)
are the mesh polygons mapped into the frame and filled with Pillow (`ImageDraw.polygon`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from app.analyzers.face.mesh_models import Roi, warp_roi
from app.analyzers.face.mesh_regions import EXCLUDED, polygons

SIZE = 224
IOD = 80.0
EYE_Y = 80.0
_RIGHT_EYE, _LEFT_EYE = list(EXCLUDED["right_eye"]), list(EXCLUDED["left_eye"])


@dataclass(frozen=True)
class Frame:
    """The canonical crop (SIZE, SIZE, 3) uint8 sRGB and its map from the image."""

    rgb: np.ndarray
    centre: np.ndarray  # eye midpoint, image pixels
    angle: float  # eye line angle, radians (y down)
    scale: float  # image pixels per canonical pixel

    def to_frame(self, points: np.ndarray) -> np.ndarray:
        """Image pixels (n, 2) -> canonical pixels (n, 2)."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        d = (np.asarray(points, dtype=np.float64)[:, :2] - self.centre) / self.scale
        return np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], 1) + (SIZE / 2, EYE_Y)


def canonical_frame(image: Image.Image, mesh: np.ndarray) -> Frame:
    """The canonical crop of the face whose mesh (image pixels of `image`) is given."""
    left, right = mesh[_RIGHT_EYE, :2].mean(0), mesh[_LEFT_EYE, :2].mean(0)  # image left, image right
    dx, dy = right - left
    angle = math.atan2(dy, dx)
    scale = max(math.hypot(dx, dy), 1e-6) / IOD
    centre = (left + right) / 2
    # The crop's centre is (SIZE / 2 - EYE_Y) canonical pixels below the eye midpoint.
    down = (SIZE / 2 - EYE_Y) * scale
    cx, cy = centre[0] - math.sin(angle) * down, centre[1] + math.cos(angle) * down
    crop = warp_roi(image, Roi(float(cx), float(cy), SIZE * scale, angle), out=SIZE)
    return Frame(np.asarray(crop, dtype=np.uint8), centre, angle, scale)


def polygon_mask(points: np.ndarray) -> np.ndarray:
    """A (SIZE, SIZE) bool mask of a polygon in canonical pixels."""
    canvas = Image.new("1", (SIZE, SIZE), 0)
    ImageDraw.Draw(canvas).polygon([(float(x), float(y)) for x, y in points], fill=1)
    return np.asarray(canvas, dtype=bool)


def region_masks(frame: Frame, mesh: np.ndarray) -> dict[str, np.ndarray]:
    """Region name -> mask in the frame, eyes, brows, lips and nostrils (grown by 2 px) removed."""
    excluded = np.zeros((SIZE, SIZE), dtype=bool)
    for indices in EXCLUDED.values():
        excluded |= polygon_mask(frame.to_frame(mesh[list(indices)]))
    excluded = dilate(excluded, 2)
    return {name: polygon_mask(frame.to_frame(poly)) & ~excluded for name, poly in polygons(mesh).items()}


def eye_masks(frame: Frame, mesh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the eye openings, the eyes and brows grown by 3 px) as (SIZE, SIZE) masks in the frame."""
    openings = np.zeros((SIZE, SIZE), dtype=bool)
    features = np.zeros((SIZE, SIZE), dtype=bool)
    for name in ("right_eye", "left_eye", "right_eyebrow", "left_eyebrow"):
        mask = polygon_mask(frame.to_frame(mesh[list(EXCLUDED[name])]))
        features |= mask
        if name.endswith("_eye"):
            openings |= mask
    return openings, dilate(features, 3)


# -- filters (numpy only, deterministic) ---------------------------------------------------------


def gaussian(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a 2-D float array (edges replicated), radius 3 sigma."""
    r = max(1, int(math.ceil(3 * sigma)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k /= k.sum()
    out = np.asarray(image, dtype=np.float64)
    for axis in (0, 1):
        padded = np.pad(out, [(r, r) if a == axis else (0, 0) for a in (0, 1)], mode="edge")
        n = out.shape[axis]
        acc = np.zeros_like(out)
        for i, w in enumerate(k):
            acc += w * (padded[i : i + n] if axis == 0 else padded[:, i : i + n])
        out = acc
    return out


def _window(mask: np.ndarray, r: int, reduce: np.ufunc, fill: float) -> np.ndarray:
    out = np.asarray(mask)
    for axis in (0, 1):
        padded = np.pad(out, [(r, r) if a == axis else (0, 0) for a in (0, 1)], constant_values=fill)
        win = np.lib.stride_tricks.sliding_window_view(padded, 2 * r + 1, axis=axis)
        out = reduce.reduce(win, axis=-1)
    return out


def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """A bool mask grown by a (2r+1)-square."""
    return _window(mask.astype(bool), r, np.logical_or, False)


def erode(mask: np.ndarray, r: int) -> np.ndarray:
    """A bool mask shrunk by a (2r+1)-square (outside the image counts as outside the mask)."""
    return _window(mask.astype(bool), r, np.logical_and, False)


def local_min(image: np.ndarray, r: int) -> np.ndarray:
    """The minimum over each pixel's (2r+1)-square (edges: +inf outside)."""
    return _window(np.asarray(image, dtype=np.float64), r, np.minimum, np.inf)


def laplacian(gray: np.ndarray) -> np.ndarray:
    """The 4-neighbour Laplacian of a 2-D array (edges replicated)."""
    p = np.pad(np.asarray(gray, dtype=np.float64), 1, mode="edge")
    return p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4 * p[1:-1, 1:-1]
