"""The quality gate on synthetic inputs: each refusal at its threshold, with its stable code
(photo exposure, eyes' whites, clipping, sharpness, other faces, framing, head pose)."""

from __future__ import annotations

import numpy as np
import pytest

from app.analyzers.face.mesh_backend import MeshFace
from app.analyzers.face.regions import FaceBox
from app.analyzers.skin_measure.color import srgb_to_lab
from app.analyzers.skin_measure.frame import SIZE, Frame, gaussian
from app.analyzers.skin_measure.quality import MIN_EYE_PIXELS, PixelQuality, QualityGate, eye_white
from app.core.errors import (
    FaceOutOfFrame,
    HeadTurned,
    ImageBlurred,
    ImageOverexposed,
    ImageTooDark,
    MultipleFaces,
)

SKIN = (200, 150, 120)


def _masks() -> tuple[dict[str, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """One skin region (the cheeks' rows), eye openings and the eyes-and-brows area."""
    skin = np.zeros((SIZE, SIZE), dtype=bool)
    skin[110:170, 30:194] = True
    openings = np.zeros((SIZE, SIZE), dtype=bool)
    openings[75:85, 70:100] = openings[75:85, 124:154] = True
    features = np.zeros((SIZE, SIZE), dtype=bool)
    features[55:95, 60:164] = True
    return {"cheeks": skin}, (openings, features)


def _frame(eye_whites: int = 220, texture: float = 30.0, skin: tuple[int, int, int] = SKIN) -> Frame:
    rgb = np.tile(np.array(skin, dtype=np.float64), (SIZE, SIZE, 1))
    rng = np.random.default_rng(0)
    rgb[55:95, 60:164] += rng.normal(0, texture, (40, 104, 1))  # brows and lashes: edges
    _, (openings, _) = _masks()
    rgb[openings] = eye_whites
    return Frame(np.clip(rgb, 0, 255).astype(np.uint8), np.zeros(2), 0.0, 1.0)


def _photo(l_star: float) -> np.ndarray:
    photo = np.zeros((50, 50, 3))
    photo[..., 0] = l_star
    return photo


def _check(gate: QualityGate, frame: Frame, photo_l: float = 90.0) -> PixelQuality:
    regions, eyes = _masks()
    return gate.check_pixels(frame, regions, eyes, _photo(photo_l))


def test_a_well_exposed_sharp_face_passes_with_its_measures() -> None:
    quality = _check(QualityGate(), _frame())
    assert quality.brightness == pytest.approx(srgb_to_lab(np.array([SKIN], dtype=np.uint8))[0][0], abs=0.01)
    assert quality.clipped == 0.0 and quality.highlights == pytest.approx(90.0)
    assert quality.eye_white == pytest.approx(srgb_to_lab(np.array([[220, 220, 220]], dtype=np.uint8))[0][0])
    assert quality.sharpness >= QualityGate().min_sharpness


def test_a_dark_photo_is_too_dark_before_anything_else() -> None:
    with pytest.raises(ImageTooDark, match="highlights"):
        _check(QualityGate(), _frame(), photo_l=30.0)
    with pytest.raises(ImageTooDark):
        QualityGate().check_photo_exposure(_photo(44.0))
    QualityGate().check_photo_exposure(_photo(46.0))
    QualityGate(min_highlight_l=20.0).check_photo_exposure(_photo(30.0))


def test_the_eyes_whites_decide_dark_and_overexposed_faces() -> None:
    with pytest.raises(ImageTooDark, match="eyes' whites"):
        _check(QualityGate(), _frame(eye_whites=90))  # L* ~38
    with pytest.raises(ImageOverexposed):
        _check(QualityGate(), _frame(eye_whites=250))  # L* ~98
    _check(QualityGate(max_eye_white_l=99.0), _frame(eye_whites=250))


def test_clipped_skin_is_overexposed() -> None:
    clipped = _frame(skin=(255, 252, 250))
    with pytest.raises(ImageOverexposed) as raised:
        _check(QualityGate(), clipped)
    assert raised.value.extra["clipped_fraction"] == 1.0
    assert _check(QualityGate(max_clipped_fraction=1.0), clipped).clipped == 1.0


def test_a_blurred_face_is_refused() -> None:
    sharp = _frame()
    blurred = np.stack([gaussian(sharp.rgb[..., c], 4.0) for c in range(3)], -1)
    frame = Frame(np.clip(blurred, 0, 255).astype(np.uint8), np.zeros(2), 0.0, 1.0)
    with pytest.raises(ImageBlurred) as raised:
        _check(QualityGate(), frame)
    assert raised.value.extra["sharpness"] < QualityGate().min_sharpness
    assert _check(QualityGate(min_sharpness=0.0), frame).sharpness < _check(QualityGate(), sharp).sharpness


def test_eye_white_needs_open_eyes_and_no_skin_is_out_of_frame() -> None:
    frame = _frame()
    closed = np.zeros((SIZE, SIZE), dtype=bool)
    closed[80, 70 : 70 + MIN_EYE_PIXELS - 1] = True
    assert eye_white(frame, closed) is None
    _, (openings, features) = _masks()
    with pytest.raises(FaceOutOfFrame):
        QualityGate().check_pixels(
            frame, {"cheeks": np.zeros((SIZE, SIZE), dtype=bool)}, (openings, features), _photo(90.0)
        )


def _face(offset: float = 300.0, others: tuple[float, ...] = ()) -> MeshFace:
    mesh = np.random.default_rng(2).uniform(-100, 100, (468, 3)) + (offset, offset, 0.0)
    return MeshFace(FaceBox(x=200, y=200, width=200, height=200), 200.0, 0.9, mesh, others)


def test_other_faces_count_from_the_minimum_size() -> None:
    gate = QualityGate(min_face_px=80, other_face_ratio=0.0)  # every face of SKIN_MIN_FACE_PX
    gate.check_face(_face(others=(79.0,)), (600, 600), (0.0, 0.0, 0.0))
    with pytest.raises(MultipleFaces) as raised:
        gate.check_face(_face(others=(79.0, 80.0)), (600, 600), (0.0, 0.0, 0.0))
    assert raised.value.extra == {"faces": 2, "max_faces": 1}


def test_other_faces_count_from_their_share_of_the_measured_face() -> None:
    gate = QualityGate(min_face_px=80)  # SKIN_OTHER_FACE_RATIO 0.75 of a 200 px face: 150 px
    gate.check_face(_face(others=(149.0, 100.0)), (600, 600), (0.0, 0.0, 0.0))  # bystanders
    with pytest.raises(MultipleFaces) as raised:
        gate.check_face(_face(others=(149.0, 150.0)), (600, 600), (0.0, 0.0, 0.0))
    assert raised.value.extra == {"faces": 2, "max_faces": 1}
    QualityGate(max_faces=2).check_face(_face(others=(180.0,)), (600, 600), (0.0, 0.0, 0.0))


def test_a_face_partly_outside_the_image_is_refused() -> None:
    with pytest.raises(FaceOutOfFrame) as raised:
        QualityGate().check_face(_face(offset=50.0), (600, 600), (0.0, 0.0, 0.0))
    assert 0 < raised.value.extra["outside_fraction"] < 1
    QualityGate(max_outside_fraction=1.0).check_face(_face(offset=50.0), (600, 600), (0.0, 0.0, 0.0))


def test_a_turned_head_is_refused_beyond_either_limit() -> None:
    gate = QualityGate(max_yaw=25.0, max_pitch=20.0)
    gate.check_face(_face(), (600, 600), (25.0, -20.0, 80.0))  # roll is not gated
    with pytest.raises(HeadTurned):
        gate.check_face(_face(), (600, 600), (25.1, 0.0, 0.0))
    with pytest.raises(HeadTurned):
        gate.check_face(_face(), (600, 600), (0.0, -20.1, 0.0))
