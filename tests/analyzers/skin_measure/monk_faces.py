"""Faces of every skin tone built from one real photo: the face recoloured to a Monk swatch.

`monk_face(mesh, image, k)` recolours the face of `image` (scikit-image's astronaut by default)
to the Monk Skin Tone swatch `k` (1-10), texture kept and the rest of the photo unchanged:

- the face area is the mesh's outline (face oval) feathered by a Gaussian of 1.5 px, less the
  eye openings (grown 1 px, not feathered: the astronaut's are ~7 px tall), so the eyes' whites
  and irises stay as they are (they are not skin);
- lightness: the linear luminance Y of every face pixel is multiplied by Y(swatch L*) / Y(median
  L*), where the median is that of the measured skin regions. Skin reflects light in proportion
  to its albedo, so a darker skin under the same light keeps the same *relative* texture (pores,
  shading, highlights' shape) at a lower level; the median lands on the swatch's L*;
- chroma: a*, b* become the swatch's plus the pixel's deviation from the face's median, scaled
  by min(1, swatch L* / median L*) (darker skin shows less colour variation in absolute a*b*).

Used by the tests (tests/analyzers/skin_measure/test_skin_tones.py) and by
`scripts/skin_tone_table.py`, which writes the table of docs/skin-methods.md.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from skimage import color

from app.analyzers.face.mesh_backend import decode, find_face
from app.analyzers.face.mesh_models import FaceMesh
from app.analyzers.face.mesh_regions import EXCLUDED, SILHOUETTE, polygons
from app.analyzers.skin_measure.color import MONK_LAB


def _y_of_l(lightness: np.ndarray | float) -> np.ndarray:
    """CIE luminance Y (white = 1) of L*."""
    lab = np.stack(np.broadcast_arrays(np.asarray(lightness, dtype=np.float64), 0.0, 0.0), -1)
    return color.lab2xyz(lab)[..., 1]


def _l_of_y(y: np.ndarray) -> np.ndarray:
    """L* of CIE luminance Y (white = 1)."""
    y = np.clip(y, 0.0, None)
    return np.where(y > (6 / 29) ** 3, 116.0 * np.cbrt(y) - 16.0, y * (29 / 3) ** 3)


def face_weight(mesh: FaceMesh, image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """(feathered 0-1 weight (H, W) of the face less the eyes, bool mask of its measured skin)."""
    found = find_face(mesh, decode(image), 80).mesh
    points = found[:, :2]
    face = Image.new("L", image.size, 0)
    ImageDraw.Draw(face).polygon([(float(x), float(y)) for x, y in points[list(SILHOUETTE)]], fill=255)
    eyes = Image.new("L", image.size, 0)
    for eye in ("right_eye", "left_eye"):
        eye_poly = [(float(x), float(y)) for x, y in points[list(EXCLUDED[eye])]]
        ImageDraw.Draw(eyes).polygon(eye_poly, fill=255, outline=255, width=2)
    weight = np.asarray(face.filter(ImageFilter.GaussianBlur(1.5)), dtype=np.float64) / 255.0
    weight[np.asarray(eyes) > 0] = 0.0  # the eye openings (grown 1 px) keep every pixel
    skin = Image.new("1", image.size, 0)
    for name, poly in polygons(found).items():
        if name != "nose_bridge":
            ImageDraw.Draw(skin).polygon([(float(x), float(y)) for x, y in poly], fill=1)
    return weight, np.asarray(skin, dtype=bool)


def recolour(image: Image.Image, weight: np.ndarray, skin: np.ndarray, target: np.ndarray) -> Image.Image:
    """`image` with its face (weight) moved to the Lab colour `target`, texture kept."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    lab = color.rgb2lab(rgb)
    med = np.median(lab[skin], axis=0)
    ratio = _y_of_l(target[0]) / _y_of_l(med[0])
    lightness = _l_of_y(_y_of_l(lab[..., 0]) * ratio)
    chroma_scale = min(1.0, float(target[0] / med[0]))
    new = np.stack(
        [
            lightness,
            target[1] + (lab[..., 1] - med[1]) * chroma_scale,
            target[2] + (lab[..., 2] - med[2]) * chroma_scale,
        ],
        -1,
    )
    out = np.clip(color.lab2rgb(new), 0.0, 1.0)
    blended = rgb + weight[..., None] * (out - rgb)
    return Image.fromarray(np.clip(np.rint(blended * 255.0), 0, 255).astype(np.uint8))


def monk_face(mesh: FaceMesh, image: Image.Image, swatch: int) -> Image.Image:
    """`image` with its face recoloured to Monk swatch `swatch` (1-10), texture kept."""
    weight, skin = face_weight(mesh, image)
    return recolour(image, weight, skin, MONK_LAB[swatch - 1])
