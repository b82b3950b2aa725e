"""The face mesh: set-up files, detection and mesh, the 468 -> 68 map against dlib, head pose."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from skimage import data

from app.analyzers.face.analyzer import FaceAnalyzer
from app.analyzers.face.mesh_models import ANCHORS, DETECTOR_FILE, MESH_FILE, FaceMesh, find_models
from app.analyzers.face.mesh_regions import EXCLUDED, MESH_TO_68, REGIONS, SILHOUETTE, head_pose, to_68
from app.analyzers.imaging import load_rgb_reduced

ROOT = Path(__file__).resolve().parents[3]
MODEL_DIR = Path(os.environ.get("MODEL_DIR", ROOT / "models"))
sys.path.insert(0, str(ROOT / "scripts"))
import fetch_face_mesh  # noqa: E402

GROUPS = {"jaw": range(0, 17), "brows": range(17, 27), "nose": range(27, 36), "eyes": range(36, 48)}
GROUPS["lips"] = range(48, 68)


@pytest.fixture(scope="module")
def mesh() -> FaceMesh:
    return FaceMesh(MODEL_DIR)


@pytest.fixture(scope="module")
def dlib() -> FaceAnalyzer:
    return FaceAnalyzer("dlib")


def astronaut(mirror: bool = False) -> Image.Image:
    image = Image.fromarray(data.astronaut())
    return ImageOps.mirror(image) if mirror else image


def test_set_up_published_the_pinned_files() -> None:
    # `make install` ran scripts/fetch_face_mesh.py: the bytes are the pinned conversion.
    for name, (_member, pin) in fetch_face_mesh.OUTPUTS.items():
        path = MODEL_DIR / name
        assert path.is_file(), f"{path} missing: run `make install`"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == pin, name
    assert find_models(MODEL_DIR) == (MODEL_DIR / DETECTOR_FILE, MODEL_DIR / MESH_FILE)
    assert "Apache License" in (MODEL_DIR / "LICENSE.mediapipe").read_text()


def test_set_up_is_idempotent(capsys: pytest.CaptureFixture[str]) -> None:
    assert fetch_face_mesh.main(["--model-dir", str(MODEL_DIR)]) == 0
    assert "up to date" in capsys.readouterr().out


def test_missing_models_say_how_to_make_them(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="fetch_face_mesh"):
        FaceMesh(tmp_path)


def test_anchors_and_detection(mesh: FaceMesh) -> None:
    assert ANCHORS.shape == (2304, 2)  # one layer of 48x48 cells, one anchor each
    faces = mesh.detect(astronaut())
    assert len(faces) == 1 and faces[0].score > 0.85
    x0, y0, x1, y1 = faces[0].box
    assert 160 < x0 < 185 and 55 < y0 < 80 and 90 < x1 - x0 < 120
    assert mesh.detect(Image.fromarray(data.coffee())) == []
    assert mesh.detect(Image.new("RGB", (300, 200), (128, 128, 128))) == []


def test_mesh_points_are_on_the_face(mesh: FaceMesh) -> None:
    image = astronaut()
    points, presence = mesh.landmarks(image, mesh.detect(image)[0])
    assert points.shape == (468, 3) and presence > 0.99
    assert 215 < points[1, 0] < 235 and 120 < points[1, 1] < 140  # nose tip
    assert 165 < points[152, 1] < 185  # chin
    assert points[33, 0] < points[133, 0] < points[362, 0] < points[263, 0]  # eye corners, left to right
    again, _ = mesh.landmarks(image, mesh.detect(image)[0])
    assert np.array_equal(points, again)


def test_region_tables_are_consistent() -> None:
    assert len(MESH_TO_68) == 68
    for entry in MESH_TO_68:
        assert abs(sum(w for _, w in entry) - 1.0) < 1e-9 and all(0 <= i < 468 for i, _ in entry)
    for table in (REGIONS, EXCLUDED):
        for indices in table.values():
            assert len(indices) >= 3 and all(0 <= i < 468 for i in indices)
    assert len(set(SILHOUETTE)) == len(SILHOUETTE) == 36


@pytest.mark.parametrize("mirror", [False, True], ids=["astronaut", "mirrored"])
def test_68_point_map_matches_dlib(mesh: FaceMesh, dlib: FaceAnalyzer, mirror: bool) -> None:
    # The map was fitted to dlib's 68-point predictor; on the astronaut (and its mirror image)
    # the mean distance is ~2.6% of the inter-ocular distance (outer eye corners).
    image = astronaut(mirror)
    _, ref = dlib.detect_landmarks(image)
    ref_pts = np.array(ref) + 0.5  # dlib's integer points name pixels; the mesh is continuous
    points, _ = mesh.landmarks(image, mesh.detect(image)[0])
    mapped = to_68(points[:, :2])
    iod = np.linalg.norm(ref_pts[36] - ref_pts[45])
    err = np.linalg.norm(mapped - ref_pts, axis=1) / iod
    assert err.mean() < 0.04, err.mean()
    assert err[list(GROUPS["eyes"])].mean() < 0.04 and err[list(GROUPS["nose"])].mean() < 0.04
    assert err[list(GROUPS["jaw"])].mean() < 0.08 and err.max() < 0.15


def test_head_pose_turns_and_mirrors(mesh: FaceMesh) -> None:
    poses = []
    for mirror in (False, True):
        image = astronaut(mirror)
        points, _ = mesh.landmarks(image, mesh.detect(image)[0])
        poses.append(head_pose(points))
    (yaw, pitch, roll), (myaw, mpitch, mroll) = poses
    assert abs(yaw) < 8 and -25 < pitch < 0 and abs(roll) < 8
    assert abs(yaw + myaw) < 3 and abs(pitch - mpitch) < 3 and abs(roll + mroll) < 3  # mirror: yaw, roll flip
    image = astronaut().rotate(20, resample=Image.Resampling.BICUBIC, expand=True)
    points, _ = mesh.landmarks(image, mesh.detect(image)[0])
    assert head_pose(points)[2] - roll == pytest.approx(20, abs=4)  # counter-clockwise on screen


def test_a_12mp_jpeg_is_decoded_reduced_and_mapped_back(tmp_path: Path) -> None:
    big = astronaut().resize((2560, 2560), Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (4000, 3000), (120, 120, 120))
    canvas.paste(big, (700, 220))
    path = tmp_path / "12mp.jpg"
    canvas.save(path, quality=90)
    image, scale = load_rgb_reduced(path, 960)
    assert image.size == (1000, 750) and scale == 4.0
    result = FaceAnalyzer(model_dir=MODEL_DIR).contours_from_image(path)
    small = FaceAnalyzer(model_dir=MODEL_DIR).contours_from_image(astronaut())
    # The same face, 5x larger and 700, 220 px further: landmarks agree within 1% of the crop.
    ref = np.array([(p.x, p.y) for p in small.landmarks]) * 5 + (700, 220)
    got = np.array([(p.x, p.y) for p in result.landmarks])
    assert np.abs(got - ref).mean() < 0.01 * result.crop.width
    assert 400 < result.face_box.width < 650 and result.mesh_regions.keys() == small.mesh_regions.keys()
