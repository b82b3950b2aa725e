"""A face's aligned regions, crop and SVG from its landmarks (`face_contours`), on a synthetic
68-point face whose geometry is known: level, rotated, moved, and the 5-point model."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from app.analyzers.face.regions import (
    JAW,
    LEFT_EYE,
    OUTER_LIPS,
    REGION_NAMES,
    RIGHT_EYE,
    RIGHT_EYEBROW,
    face_contours,
)

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _ring(centre: tuple[float, float], rx: float, ry: float, n: int) -> list[tuple[float, float]]:
    return [
        (centre[0] + rx * math.cos(2 * math.pi * i / n), centre[1] + ry * math.sin(2 * math.pi * i / n))
        for i in range(n)
    ]


def synthetic_face(scale: float = 100.0, origin: tuple[float, float] = (300.0, 300.0)) -> np.ndarray:
    """68 iBUG points of a level, symmetric face (eye distance `scale`), y down."""
    pts: list[tuple[float, float]] = []
    pts += [(-math.cos(math.pi * i / 16), 1.2 * math.sin(math.pi * i / 16)) for i in range(17)]  # jaw
    pts += [(-0.8 + 0.15 * i, -0.55) for i in range(5)]  # image-left brow
    pts += [(0.2 + 0.15 * i, -0.55) for i in range(5)]  # image-right brow
    pts += [(0.0, -0.3 + 0.15 * i) for i in range(4)]  # nose bridge 27-30
    pts += [(-0.2 + 0.1 * i, 0.4) for i in range(5)]  # nostrils 31-35
    pts += _ring((-0.5, -0.25), 0.18, 0.07, 6) + _ring((0.5, -0.25), 0.18, 0.07, 6)  # eyes
    pts += _ring((0.0, 0.7), 0.4, 0.15, 12) + _ring((0.0, 0.7), 0.3, 0.05, 8)  # lips
    return np.array(pts) * scale + origin


def _rotate(points: np.ndarray, degrees: float, centre: tuple[float, float]) -> np.ndarray:
    t = math.radians(degrees)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return (points - centre) @ rot.T + centre


def _map(transform: list[float], points: np.ndarray) -> np.ndarray:
    a, b, c, d, e, f = transform
    return np.stack([a * points[:, 0] + b * points[:, 1] + c, d * points[:, 0] + e * points[:, 1] + f], 1)


def test_a_level_face_gets_every_region_and_a_square_crop_around_it() -> None:
    points = synthetic_face()
    result = face_contours((600, 600), [tuple(p) for p in points])
    assert list(result.regions) == list(REGION_NAMES)
    assert result.rotation_degrees == 0.0 and result.crop.width == result.crop.height
    # the transform is a pure shift for a level face; the eyes and lips keep their shapes
    a, b, _, d, e, _ = result.transform
    assert (a, b, d, e) == (1.0, 0.0, 0.0, 1.0)
    crop = _map(result.transform, points)
    assert (crop >= 0).all() and (crop <= result.crop.width).all()
    assert result.face_box.x == math.floor(points[:, 0].min()) and result.face_box.width > 0
    assert len(result.landmarks) == 68 and result.svg.count("<path") == len(REGION_NAMES)


def test_the_forehead_arc_clears_the_brows() -> None:
    points = synthetic_face()
    result = face_contours((600, 600), [tuple(p) for p in points], margin=0.0)
    oval = np.array([float(v) for v in NUMBER.findall(result.regions["face_oval"])]).reshape(-1, 2)
    brows = _map(result.transform, points[list(RIGHT_EYEBROW)])
    assert oval[:, 1].min() < brows[:, 1].min()  # the oval's top is above the brows
    assert len(oval) == len(JAW) + 15


def test_a_rotated_face_gives_its_angle_and_the_same_aligned_regions() -> None:
    level = face_contours((600, 600), [tuple(p) for p in synthetic_face()])
    turned_points = _rotate(synthetic_face(), 30.0, (250.0, 320.0))
    turned = face_contours((600, 600), [tuple(p) for p in turned_points])
    # 30 degrees clockwise on screen (y down) is -30 in PIL's counter-clockwise sense
    assert turned.rotation_degrees == pytest.approx(-30.0)
    assert turned.crop == level.crop
    assert _map(turned.transform, turned_points) == pytest.approx(
        _map(level.transform, synthetic_face()),
        abs=1e-3,  # the transform has 6 decimals
    )
    for name in ("left_eye", "right_eye", "outer_lips"):
        ours = np.array([float(v) for v in NUMBER.findall(turned.regions[name])])
        theirs = np.array([float(v) for v in NUMBER.findall(level.regions[name])])
        assert ours == pytest.approx(theirs, abs=0.06)


def test_moving_the_face_moves_only_its_box() -> None:
    here = face_contours((900, 900), [tuple(p) for p in synthetic_face()])
    there = face_contours((900, 900), [tuple(p) for p in synthetic_face(origin=(500.0, 420.0))])
    assert there.regions == here.regions and there.crop == here.crop
    assert (there.face_box.x - here.face_box.x, there.face_box.y - here.face_box.y) == (200, 120)


def test_margin_grows_the_crop() -> None:
    points = [tuple(p) for p in synthetic_face()]
    tight, loose = face_contours((600, 600), points, 0.0), face_contours((600, 600), points, 0.5)
    assert loose.crop.width == pytest.approx(2 * tight.crop.width, abs=1)


def test_five_points_align_without_regions() -> None:
    face = synthetic_face()
    right_corners = face[[45, 42]]  # 0-1: the image-right eye's corners
    left_corners = face[[36, 39]]  # 2-3: the image-left eye's corners
    five = np.concatenate([right_corners, left_corners, face[[33]]])
    result = face_contours((600, 600), [tuple(p) for p in five], margin=0.0)
    assert result.regions == {} and result.rotation_degrees == 0.0
    eye_distance = float(np.linalg.norm(face[list(LEFT_EYE)].mean(0) - face[list(RIGHT_EYE)].mean(0)))
    assert result.crop.width == round(3.0 * eye_distance)  # 1.1 above, 1.9 below the eyes


def test_landmarks_are_checked() -> None:
    with pytest.raises(ValueError, match="68 or 5"):
        face_contours((100, 100), [(1.0, 2.0)] * 10)
    points = [tuple(p) for p in synthetic_face()]
    points[OUTER_LIPS[0]] = (math.nan, 1.0)
    with pytest.raises(ValueError, match="finite"):
        face_contours((600, 600), points)
    with pytest.raises(ValueError, match="margin"):
        face_contours((600, 600), [tuple(p) for p in synthetic_face()], margin=1.5)
