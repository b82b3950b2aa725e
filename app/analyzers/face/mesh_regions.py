"""Face Mesh geometry: the 468 -> 68 iBUG index map, head pose and the finer skin regions.

**68-point map.** `MESH_TO_68[k]` gives iBUG 300-W point k as the weighted mean of one or two
mesh vertices (weights sum to 1). It was fitted to dlib's `shape_predictor_68_face_landmarks`
on 7 photos and their mirror images (14 near-frontal faces, |yaw|, |pitch| <= 20 degrees), left
and right kept symmetric (point k and its iBUG partner use mirrored vertices); a pair replaced
a single vertex only where it cut the mean error by more than 10%. Agreement with dlib, in %
of the inter-ocular distance (outer eye corners): astronaut (+ mirror) mean 2.6 (jaw 3.9,
brows 2.9, nose 1.8, eyes 1.7, lips 2.3); near-frontal faces, leave-one-subject-out, mean
3.75. The jaw differs most: dlib follows the 2-D silhouette, which no fixed vertex can
follow under yaw. A widely circulated one-vertex-per-point list gives 4.3 on the astronaut.

**Regions** (subject's point of view, as `face_regions`: the subject's right cheek is on the
image's left) are closed polygons of mesh vertices: `forehead` (from the brows' upper edge
0.6 of the way to the mesh row above it; higher, fringes and hair are too often in the way),
`right_cheek` / `left_cheek` (below the under-eye band, lateral to the nose and nasolabial
fold), `right_under_eye` / `left_under_eye` (between the second and fourth lower-lid
contours), `chin` (below the lower lip) and `nose_bridge` (between the eyes down to above the
tip). `EXCLUDED` are the parts never measured as skin: eyes, brows, lips and nostrils.

**Head pose** (degrees): an orthonormal face frame from the mesh (weak perspective): x from
the image-left to the image-right points of mirror pairs (outer and inner eye corners, mouth
corners, cheek contour), y from the chin to mid-forehead made orthogonal to x, z = x cross y.
yaw > 0: the face turns towards the image's right; pitch > 0: it tilts up; roll > 0: it tilts
counter-clockwise on screen. 0 pitch means the forehead-chin line is in the image plane.
"""

from __future__ import annotations

import math

import numpy as np

MESH_TO_68: tuple[tuple[tuple[int, float], ...], ...] = (
    ((127, 1.0),), ((234, 0.5), (137, 0.5)), ((132, 0.5), (137, 0.5)), ((215, 1.0),),  # jaw 0-3
    ((172, 1.0),), ((136, 0.5), (150, 0.5)), ((149, 1.0),), ((148, 1.0),),  # jaw 4-7
    ((152, 1.0),), ((377, 1.0),), ((378, 1.0),), ((365, 0.5), (379, 0.5)),  # jaw 8-11 (8: chin)
    ((397, 1.0),), ((435, 1.0),), ((361, 0.5), (366, 0.5)), ((454, 0.5), (366, 0.5)),  # jaw 12-15
    ((356, 1.0),),  # jaw 16
    ((156, 0.75), (63, 0.25)), ((63, 1.0),), ((52, 0.75), (69, 0.25)),  # brow 17-19 (image left)
    ((65, 0.75), (108, 0.25)), ((107, 0.75), (193, 0.25)),  # brow 20-21
    ((336, 0.75), (417, 0.25)), ((295, 0.75), (337, 0.25)),  # brow 22-23 (image right)
    ((282, 0.75), (299, 0.25)), ((293, 1.0),), ((383, 0.75), (293, 0.25)),  # brow 24-26
    ((417, 0.5), (193, 0.5)), ((197, 1.0),), ((5, 1.0),), ((4, 1.0),),  # nose bridge 27-30
    ((240, 0.75), (99, 0.25)), ((97, 1.0),), ((2, 1.0),), ((326, 1.0),),  # nostrils 31-34
    ((460, 0.75), (328, 0.25)),  # nostril 35
    ((7, 1.0),), ((159, 0.75), (7, 0.25)), ((158, 0.75), (153, 0.25)),  # eye 36-38 (image left)
    ((112, 0.75), (157, 0.25)), ((153, 0.75), (23, 0.25)), ((163, 0.5), (23, 0.5)),  # eye 39-41
    ((341, 0.75), (384, 0.25)), ((385, 0.75), (380, 0.25)), ((386, 0.75), (249, 0.25)),  # eye 42-44
    ((249, 1.0),), ((390, 0.5), (253, 0.5)), ((380, 0.75), (253, 0.25)),  # eye 45-47 (image right)
    ((61, 1.0),), ((39, 0.5), (74, 0.5)), ((37, 0.75), (72, 0.25)),  # outer lips 48-50
    ((302, 0.5), (72, 0.5)), ((267, 0.75), (302, 0.25)), ((269, 0.5), (304, 0.5)),  # 51-53
    ((291, 1.0),), ((321, 0.5), (405, 0.5)), ((314, 1.0),), ((17, 1.0),),  # 54-57
    ((84, 1.0),), ((91, 0.5), (181, 0.5)),  # 58-59
    ((184, 0.5), (146, 0.5)), ((38, 1.0),), ((13, 1.0),), ((268, 1.0),),  # inner lips 60-63
    ((408, 0.5), (375, 0.5)), ((317, 1.0),), ((14, 1.0),), ((87, 1.0),),  # inner lips 64-67
)  # fmt: skip

# The mesh's outline (face oval), clockwise on screen from the top of the forehead.
SILHOUETTE = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip

_LOWER1_R = (130, 25, 110, 24, 23, 22, 26, 112, 243)  # lower-lid contours, image-left eye
_LOWER3_R = (143, 111, 117, 118, 119, 120, 121, 128, 245)
_LOWER1_L = (359, 255, 339, 254, 253, 252, 256, 341, 463)  # the same, image-right eye
_LOWER3_L = (372, 340, 346, 347, 348, 349, 350, 357, 465)

# The forehead's lower edge (the brows' upper edge, image left to right) and the mesh row above
# it; the region's upper edge is FOREHEAD_HEIGHT of the way up, clear of most fringes and hair.
FOREHEAD_LOWER = (105, 66, 107, 9, 336, 296, 334)
FOREHEAD_UPPER = (104, 69, 108, 151, 337, 299, 333)
FOREHEAD_HEIGHT = 0.6

REGIONS: dict[str, tuple[int, ...]] = {
    "forehead": FOREHEAD_UPPER + FOREHEAD_LOWER[::-1],  # vertices; see `polygons` for the upper edge
    "right_cheek": (116, 117, 118, 101, 36, 203, 206, 216, 207, 187, 147, 123),
    "left_cheek": (345, 346, 347, 330, 266, 423, 426, 436, 427, 411, 376, 352),
    "right_under_eye": _LOWER1_R + _LOWER3_R[::-1],
    "left_under_eye": _LOWER1_L + _LOWER3_L[::-1],
    "chin": (182, 83, 18, 313, 406, 418, 262, 428, 199, 208, 32, 194),
    "nose_bridge": (193, 168, 417, 351, 419, 248, 195, 3, 196, 122),
}
MESH_REGION_NAMES: tuple[str, ...] = tuple(REGIONS)

EXCLUDED: dict[str, tuple[int, ...]] = {
    "right_eye": (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7),
    "left_eye": (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249),
    "right_eyebrow": (156, 70, 63, 105, 66, 107, 55, 65, 52, 53, 46, 35),
    "left_eyebrow": (383, 300, 293, 334, 296, 336, 285, 295, 282, 283, 276, 265),
    "lips": (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146),
    "nostrils": (129, 98, 97, 2, 326, 327, 358, 294, 460, 328, 462, 370, 94, 141, 242, 99, 240, 64),
}


_MAP_68 = np.zeros((68, 468))
for _k, _entry in enumerate(MESH_TO_68):
    for _index, _weight in _entry:
        _MAP_68[_k, _index] = _weight


def to_68(mesh: np.ndarray) -> np.ndarray:
    """The 68 iBUG points (68, d) of a (468, d) mesh, by `MESH_TO_68`."""
    return _MAP_68 @ np.asarray(mesh, dtype=np.float64)


def head_pose(mesh: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a (468, 3) mesh in image pixels (see the module docstring)."""
    p = np.asarray(mesh, dtype=np.float64).copy()
    p[:, 1] *= -1.0  # y up
    p[:, 2] *= -1.0  # z towards the viewer
    x = p[[263, 362, 291, 454]].mean(0) - p[[33, 133, 61, 234]].mean(0)
    x /= np.linalg.norm(x)
    y = p[[151, 9, 8, 10]].mean(0) - p[[152, 175]].mean(0)
    y -= x * (x @ y)
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    rot = np.stack([x, y, z], 1)
    yaw = math.atan2(z[0], z[2])
    pitch = math.asin(max(-1.0, min(1.0, z[1])))
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(-pitch), math.sin(-pitch)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = (ry @ rx).T @ rot  # what is left once yaw and pitch are removed: a rotation about z
    roll = math.atan2(rz[1, 0], rz[0, 0])
    return math.degrees(yaw), math.degrees(pitch), math.degrees(roll)


def polygons(mesh: np.ndarray, names: dict[str, tuple[int, ...]] = REGIONS) -> dict[str, np.ndarray]:
    """Region name -> (n, 2) polygon in the mesh's x, y coordinates (the forehead's upper
    edge lowered to FOREHEAD_HEIGHT of its mesh row)."""
    pts = np.asarray(mesh, dtype=np.float64)[:, :2]
    out = {name: pts[list(indices)] for name, indices in names.items()}
    if "forehead" in out and names.get("forehead") == REGIONS["forehead"]:
        lower, upper = pts[list(FOREHEAD_LOWER)], pts[list(FOREHEAD_UPPER)]
        out["forehead"] = np.concatenate([lower + FOREHEAD_HEIGHT * (upper - lower), lower[::-1]])
    return out
