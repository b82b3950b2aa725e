"""The canonical face frame (eyes level, fixed eye distance) and the numpy filters it uses."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app.analyzers.face.mesh_regions import EXCLUDED
from app.analyzers.skin_measure.frame import (
    EYE_Y,
    IOD,
    SIZE,
    canonical_frame,
    dilate,
    erode,
    gaussian,
    laplacian,
    local_min,
    polygon_mask,
)


def _mesh(right_eye: tuple[float, float], left_eye: tuple[float, float]) -> np.ndarray:
    """A mesh whose eye contours sit on two points (the image-left eye is the subject's right)."""
    mesh = np.zeros((468, 3))
    mesh[list(EXCLUDED["right_eye"]), :2] = right_eye
    mesh[list(EXCLUDED["left_eye"]), :2] = left_eye
    return mesh


def _gradient() -> Image.Image:
    """R = x, G = y: a pixel's colour says where in the image it came from."""
    y, x = np.mgrid[0:256, 0:256]
    return Image.fromarray(np.stack([x, y, np.zeros_like(x)], -1).astype(np.uint8))


def test_level_eyes_80_px_apart_keep_the_scale_and_put_the_midpoint_at_its_place() -> None:
    frame = canonical_frame(_gradient(), _mesh((100, 100), (100 + IOD, 100)))
    assert frame.rgb.shape == (SIZE, SIZE, 3) and frame.rgb.dtype == np.uint8
    assert frame.angle == pytest.approx(0.0) and frame.scale == pytest.approx(1.0)
    assert frame.to_frame(np.array([[140.0, 100.0]])) == pytest.approx(np.array([[SIZE / 2, EYE_Y]]))
    # the frame's pixel at the eye midpoint shows the image's pixel there; 1 frame px = 1 image px
    r, g, _ = frame.rgb[int(EYE_Y), SIZE // 2].astype(int)
    assert abs(r - 140) <= 1 and abs(g - 100) <= 1
    r, g, _ = frame.rgb[int(EYE_Y) + 50, SIZE // 2 - 30].astype(int)
    assert abs(r - 110) <= 1 and abs(g - 150) <= 1


def test_a_rotated_and_smaller_face_is_levelled_and_scaled() -> None:
    # eyes one above the other, 40 px apart: a face turned 90 degrees at half the scale
    frame = canonical_frame(_gradient(), _mesh((140, 80), (140, 120)))
    assert frame.angle == pytest.approx(np.pi / 2) and frame.scale == pytest.approx(0.5)
    left_eye = frame.to_frame(np.array([[140.0, 120.0]]))[0]
    assert left_eye == pytest.approx([SIZE / 2 + IOD / 2, EYE_Y])
    r, g, _ = frame.rgb[int(EYE_Y), int(SIZE / 2 + IOD / 2)].astype(int)
    assert abs(r - 140) <= 1 and abs(g - 120) <= 1


def test_polygon_mask_fills_the_polygon() -> None:
    mask = polygon_mask(np.array([[10, 20], [29, 20], [29, 29], [10, 29]]))
    assert mask.shape == (SIZE, SIZE) and mask.sum() == 20 * 10
    assert mask[20, 10] and mask[29, 29] and not mask[19, 10] and not mask[20, 30]


def test_dilate_and_erode_by_a_square() -> None:
    dot = np.zeros((9, 9), dtype=bool)
    dot[4, 4] = True
    assert dilate(dot, 1).sum() == 9 and dilate(dot, 2).sum() == 25
    square = np.zeros((9, 9), dtype=bool)
    square[2:7, 2:7] = True
    assert erode(square, 1).sum() == 9 and erode(square, 2).sum() == 1 and erode(square, 3).sum() == 0
    # outside the image counts as outside the mask
    full = np.ones((5, 5), dtype=bool)
    assert erode(full, 1).sum() == 9


def test_gaussian_keeps_constants_and_the_total_of_an_impulse() -> None:
    flat = np.full((20, 30), 7.0)
    assert np.allclose(gaussian(flat, 2.0), 7.0)
    impulse = np.zeros((41, 41))
    impulse[20, 20] = 1.0
    blurred = gaussian(impulse, 2.0)
    assert blurred.sum() == pytest.approx(1.0)
    assert blurred[20, 20] == blurred.max() and blurred[20, 22] == pytest.approx(blurred[22, 20])
    # the spread is sigma: variance along x of the blurred impulse is sigma^2
    x = np.arange(41) - 20
    assert float((blurred.sum(axis=0) * x**2).sum()) == pytest.approx(4.0, rel=0.02)


def test_local_min_and_laplacian() -> None:
    image = np.arange(25, dtype=np.float64).reshape(5, 5)
    assert local_min(image, 1)[2, 2] == 6.0 and local_min(image, 1)[0, 0] == 0.0
    ramp = np.tile(np.arange(10, dtype=np.float64), (10, 1))
    assert np.allclose(laplacian(ramp)[1:-1, 1:-1], 0.0)
    parabola = np.tile(np.arange(10, dtype=np.float64) ** 2, (10, 1))
    assert np.allclose(laplacian(parabola)[1:-1, 1:-1], 2.0)
