"""Face Mesh geometry: the 468 -> 68 map, head pose on a mesh turned by known angles, and the
finer skin regions' polygons."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.analyzers.face.mesh_regions import (
    FOREHEAD_HEIGHT,
    FOREHEAD_LOWER,
    FOREHEAD_UPPER,
    MESH_REGION_NAMES,
    MESH_TO_68,
    REGIONS,
    head_pose,
    polygons,
    to_68,
)

# The vertices head_pose reads, on a frontal face (x right, y up, z towards the viewer)
IMAGE_RIGHT, IMAGE_LEFT = (263, 362, 291, 454), (33, 133, 61, 234)
TOP, BOTTOM = (151, 9, 8, 10), (152, 175)


def _frontal() -> np.ndarray:
    face = np.zeros((468, 3))
    face[list(IMAGE_RIGHT), 0] = 1.0
    face[list(IMAGE_LEFT), 0] = -1.0
    face[list(TOP), 1] = 1.5
    face[list(BOTTOM), 1] = -1.5
    return face


def _to_image(face: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Rotate a y-up face, then put it into image pixels (y down, z away), 100 px per unit."""
    turned = face @ rotation.T
    return turned * np.array([100.0, -100.0, -100.0]) + np.array([300.0, 300.0, 0.0])


def _about(axis: str, degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return {
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


def test_a_frontal_face_has_no_pose() -> None:
    assert head_pose(_to_image(_frontal(), np.eye(3))) == pytest.approx((0.0, 0.0, 0.0), abs=1e-9)


@pytest.mark.parametrize("degrees", [-30.0, 12.5, 40.0])
def test_each_angle_is_read_alone(degrees: float) -> None:
    yaw, pitch, roll = head_pose(_to_image(_frontal(), _about("y", degrees)))
    assert (yaw, pitch, roll) == pytest.approx((degrees, 0.0, 0.0), abs=1e-9)
    # the top of the head coming towards the viewer is the face tilting down
    yaw, pitch, roll = head_pose(_to_image(_frontal(), _about("x", degrees)))
    assert (yaw, pitch, roll) == pytest.approx((0.0, -degrees, 0.0), abs=1e-9)
    # counter-clockwise on screen
    yaw, pitch, roll = head_pose(_to_image(_frontal(), _about("z", degrees)))
    assert (yaw, pitch, roll) == pytest.approx((0.0, 0.0, degrees), abs=1e-9)


def test_combined_angles_are_recovered() -> None:
    rotation = _about("y", 20.0) @ _about("x", -10.0) @ _about("z", 5.0)
    assert head_pose(_to_image(_frontal(), rotation)) == pytest.approx((20.0, 10.0, 5.0), abs=1e-6)


def test_to_68_is_a_weighted_mean_of_mesh_vertices() -> None:
    assert len(MESH_TO_68) == 68
    assert all(sum(w for _, w in point) == pytest.approx(1.0) for point in MESH_TO_68)
    mesh = np.random.default_rng(0).uniform(0, 500, (468, 3))
    points = to_68(mesh)
    assert points.shape == (68, 3)
    assert points[8] == pytest.approx(mesh[152])  # the chin is one vertex
    assert points[1] == pytest.approx((mesh[234] + mesh[137]) / 2)
    # weights sum to 1: moving the mesh moves the 68 points the same way
    assert to_68(mesh + (10.0, -5.0, 2.0)) == pytest.approx(points + (10.0, -5.0, 2.0))


def test_polygons_follow_the_mesh_and_lower_the_forehead() -> None:
    mesh = np.random.default_rng(1).uniform(0, 500, (468, 3))
    regions = polygons(mesh)
    assert list(regions) == list(MESH_REGION_NAMES)
    assert regions["right_cheek"] == pytest.approx(mesh[list(REGIONS["right_cheek"]), :2])
    lower, upper = mesh[list(FOREHEAD_LOWER), :2], mesh[list(FOREHEAD_UPPER), :2]
    forehead = regions["forehead"]
    assert forehead[: len(lower)] == pytest.approx(lower + FOREHEAD_HEIGHT * (upper - lower))
    assert forehead[len(lower) :] == pytest.approx(lower[::-1])
    # a region set of one's own is taken as it is
    own = polygons(mesh, {"forehead": (1, 2, 3)})
    assert own["forehead"] == pytest.approx(mesh[[1, 2, 3], :2])
