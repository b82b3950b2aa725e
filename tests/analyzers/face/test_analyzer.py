"""The `face` analyzer: detection, landmarks, alignment, regions, SVG, segmentation contours."""

from __future__ import annotations

import io
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError
from skimage import data

from app.analyzers.base import ImageSource
from app.analyzers.face.analyzer import (
    REGION_NAMES,
    FaceAnalyzer,
    FaceParams,
    FaceResult,
)
from app.analyzers.face.mesh_regions import MESH_REGION_NAMES
from app.analyzers.imaging import load_gray, load_rgb
from app.analyzers.svg import SVG_NAMESPACE
from app.core.errors import FaceTooSmall, NoFaceDetected, UndecodableImage

MODEL_DIR = Path(os.environ.get("MODEL_DIR", Path(__file__).resolve().parents[3] / "models"))
NS = {"svg": SVG_NAMESPACE}
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    """The default backend: MediaPipe BlazeFace + Face Mesh (models set up in models/)."""
    return FaceAnalyzer(model_dir=MODEL_DIR)


@pytest.fixture(scope="module")
def dlib_analyzer() -> FaceAnalyzer:
    return FaceAnalyzer("dlib")


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="module")
def astronaut_result(analyzer: FaceAnalyzer, astronaut: Image.Image, tmp_path_factory) -> FaceResult:
    path = tmp_path_factory.mktemp("face") / "astronaut.png"
    astronaut.save(path)
    result = analyzer.analyze(ImageSource("a", path), FaceParams())
    assert isinstance(result, FaceResult)
    return result


def _source(tmp_path: Path, image: Image.Image, name: str = "img.png", **options: object) -> ImageSource:
    path = tmp_path / name
    image.save(path, **options)
    return ImageSource("id", path)


def _path_points(d: str) -> np.ndarray:
    values = [float(v) for v in NUMBER.findall(d)]
    return np.array(values).reshape(-1, 2)


def _bbox(d: str) -> tuple[float, float, float, float]:
    pts = _path_points(d)
    return (*pts.min(axis=0), *pts.max(axis=0))


def _aligned_landmarks(result: FaceResult) -> np.ndarray:
    """Landmarks mapped into the crop with the result's own transform, in crop widths."""
    a, b, c, d, e, f = result.transform
    pts = np.array([(p.x, p.y) for p in result.landmarks])
    mapped = np.stack([a * pts[:, 0] + b * pts[:, 1] + c, d * pts[:, 0] + e * pts[:, 1] + f], axis=1)
    return mapped / result.crop.width


# -- the astronaut ---------------------------------------------------------------------------


def test_astronaut_regions_landmarks_and_box(astronaut_result: FaceResult) -> None:
    r = astronaut_result
    assert list(r.regions) == list(REGION_NAMES)
    assert len(r.landmarks) == 68
    assert all(0 <= p.x < 512 and 0 <= p.y < 512 for p in r.landmarks)
    # The face is at about (179, 83) and 88 px wide in the 512x512 photo.
    # BlazeFace full range's box: forehead to chin, about (172, 67) and 105 px wide.
    assert abs(r.face_box.x - 172) <= 10 and abs(r.face_box.y - 67) <= 10
    assert 85 <= r.face_box.width <= 125
    assert abs(r.rotation_degrees) < 8
    assert r.crop.width == r.crop.height > r.face_box.width
    for d in r.regions.values():
        assert d.startswith("M") and d.endswith(" Z")
        x0, y0, x1, y1 = _bbox(d)
        assert 0 <= x0 < x1 <= r.crop.width and 0 <= y0 < y1 <= r.crop.height


def test_astronaut_svg_parses_with_one_path_per_region(astronaut_result: FaceResult) -> None:
    root = ET.fromstring(astronaut_result.svg)
    assert root.get("width") == str(astronaut_result.crop.width)
    paths = root.findall("svg:path", NS)
    assert [p.get("id") for p in paths] == list(REGION_NAMES)
    assert {p.get("id"): p.get("d") for p in paths} == astronaut_result.regions


def test_astronaut_region_layout_is_anatomical(astronaut_result: FaceResult) -> None:
    boxes = {name: _bbox(d) for name, d in astronaut_result.regions.items()}

    def centre(name: str) -> tuple[float, float]:
        x0, y0, x1, y1 = boxes[name]
        return (x0 + x1) / 2, (y0 + y1) / 2

    # Subject's right eye/brow are on the image's left.
    assert centre("right_eye")[0] < centre("nose")[0] < centre("left_eye")[0]
    assert centre("right_eyebrow")[0] < centre("left_eyebrow")[0]
    assert centre("left_eyebrow")[1] < centre("left_eye")[1] < centre("nose")[1] < centre("outer_lips")[1]
    # Eyes level after alignment; the oval encloses every other region.
    assert abs(centre("left_eye")[1] - centre("right_eye")[1]) < 3
    ox0, oy0, ox1, oy1 = boxes["face_oval"]
    for name, (x0, y0, x1, y1) in boxes.items():
        assert ox0 <= x0 and oy0 <= y0 and x1 <= ox1 and y1 <= oy1, name
    ix0, iy0, ix1, iy1 = boxes["inner_lips"]
    lx0, ly0, lx1, ly1 = boxes["outer_lips"]
    assert lx0 <= ix0 and ly0 <= iy0 and ix1 <= lx1 and iy1 <= ly1


def test_result_is_deterministic(analyzer: FaceAnalyzer, astronaut: Image.Image) -> None:
    first = analyzer.detect_landmarks(astronaut)
    assert analyzer.detect_landmarks(astronaut) == first


def test_margin_scales_the_crop(analyzer: FaceAnalyzer, astronaut_result: FaceResult) -> None:
    points = [(p.x, p.y) for p in astronaut_result.landmarks]
    tight = analyzer.contours_from_landmarks((512, 512), points, 0.0)
    loose = analyzer.contours_from_landmarks((512, 512), points, 0.5)
    assert loose.crop.width == pytest.approx(2 * tight.crop.width, abs=2)
    # With no margin the regions touch the crop's edge on their long axis.
    x0, y0, x1, y1 = _bbox(tight.regions["face_oval"])
    assert min(x0, y0) == pytest.approx(0, abs=0.6)
    assert max(x1, y1) == pytest.approx(tight.crop.width, abs=0.6)


# -- failures ---------------------------------------------------------------------------------


def test_coffee_has_no_face(analyzer: FaceAnalyzer, tmp_path: Path) -> None:
    with pytest.raises(NoFaceDetected) as exc:
        analyzer.analyze(_source(tmp_path, Image.fromarray(data.coffee())), FaceParams())
    assert exc.value.code == "no_face_detected" and exc.value.status == 422


def test_tiny_face_is_too_small(analyzer: FaceAnalyzer, astronaut: Image.Image, tmp_path: Path) -> None:
    tiny = astronaut.resize((100, 100), Image.Resampling.LANCZOS)
    with pytest.raises(FaceTooSmall) as exc:
        analyzer.analyze(_source(tmp_path, tiny), FaceParams())
    assert exc.value.code == "face_too_small" and exc.value.status == 422
    assert exc.value.extra["face_px"] < 40 and exc.value.extra["min_face_px"] == 80


def test_min_face_px_is_a_param(analyzer: FaceAnalyzer, astronaut: Image.Image, tmp_path: Path) -> None:
    source = _source(tmp_path, astronaut)
    with pytest.raises(FaceTooSmall):
        analyzer.analyze(source, FaceParams(min_face_px=200))
    small = astronaut.resize((256, 256), Image.Resampling.LANCZOS)  # face ~45 px
    result = analyzer.analyze(_source(tmp_path, small, "small.png"), FaceParams(min_face_px=30))
    assert len(result.regions) == len(REGION_NAMES)


def test_second_pass_upsamples_for_mid_sized_faces(
    dlib_analyzer: FaceAnalyzer, astronaut: Image.Image
) -> None:
    # dlib: a ~52 px face in a 780 px image: missed without upsampling, found by the second pass.
    canvas = Image.new("RGB", (780, 780), (128, 128, 128))
    canvas.paste(astronaut.resize((300, 300), Image.Resampling.LANCZOS), (240, 240))
    box, points = dlib_analyzer.detect_landmarks(canvas, min_face_px=30)
    assert 40 <= box.width <= 70 and 240 <= box.x <= 540
    assert len(points) == 68
    with pytest.raises(FaceTooSmall):
        dlib_analyzer.detect_landmarks(canvas)


def test_mesh_finds_a_face_of_a_fifteenth_of_the_frame(
    analyzer: FaceAnalyzer, astronaut: Image.Image
) -> None:
    # The short-range detector missed a ~60 px face in a 780 px frame; full range finds it.
    canvas = Image.new("RGB", (780, 780), (128, 128, 128))
    canvas.paste(astronaut.resize((300, 300), Image.Resampling.LANCZOS), (240, 240))
    box, _ = analyzer.detect_landmarks(canvas, min_face_px=30)
    assert 240 + 90 < box.x < 240 + 120 and 45 <= box.width <= 80


def test_params_are_validated() -> None:
    assert FaceParams().margin == pytest.approx(0.3) and FaceParams().min_face_px == 80
    with pytest.raises(ValidationError):
        FaceParams(margin=2.0)
    with pytest.raises(ValidationError):
        FaceParams(min_face_px=0)
    with pytest.raises(ValidationError):
        FaceParams.model_validate({"margin": 0.3, "smooth": True})


def test_undecodable_bytes(tmp_path: Path) -> None:
    path = tmp_path / "bad.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(UndecodableImage):
        load_gray(path)


# -- geometry under rotation and EXIF ---------------------------------------------------------


def test_rotated_face_gives_rotation_and_same_aligned_geometry(
    analyzer: FaceAnalyzer, astronaut: Image.Image, astronaut_result: FaceResult, tmp_path: Path
) -> None:
    for angle in (15, -15):
        rotated = astronaut.rotate(angle, expand=True, resample=Image.Resampling.BICUBIC)
        result = analyzer.analyze(_source(tmp_path, rotated, f"rot{angle}.png"), FaceParams())
        assert isinstance(result, FaceResult)
        # The photo's own head tilt plus the applied rotation (counter-clockwise positive).
        assert result.rotation_degrees - astronaut_result.rotation_degrees == pytest.approx(angle, abs=4)
        assert result.crop.width == pytest.approx(astronaut_result.crop.width, rel=0.1)
        # Aligned landmarks land on about the same spots of the crop (in crop widths).
        diff = np.abs(_aligned_landmarks(result) - _aligned_landmarks(astronaut_result))
        assert diff.mean() < 0.03
        for name in REGION_NAMES:
            box = np.array(_bbox(result.regions[name])) / result.crop.width
            ref = np.array(_bbox(astronaut_result.regions[name])) / astronaut_result.crop.width
            assert np.abs(box - ref).max() < 0.08, name


def test_exif_orientation_6_is_applied(
    analyzer: FaceAnalyzer, astronaut: Image.Image, astronaut_result: FaceResult, tmp_path: Path
) -> None:
    # Stored sideways (rotated 90 degrees counter-clockwise) with "rotate 90 CW to display".
    stored = astronaut.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    source = _source(tmp_path, stored, "exif6.jpg", quality=95, exif=exif)
    upright = load_rgb(source.path)
    assert upright.size == (512, 512)
    result = analyzer.analyze(source, FaceParams())
    assert isinstance(result, FaceResult)
    assert abs(result.rotation_degrees - astronaut_result.rotation_degrees) < 4
    assert abs(result.face_box.x - astronaut_result.face_box.x) <= 8
    assert abs(result.face_box.y - astronaut_result.face_box.y) <= 8
    # load_rgb + detect_landmarks (the path for an already decoded image) agrees.
    box, points = analyzer.detect_landmarks(upright)
    assert len(points) == 68
    assert abs(box.x - result.face_box.x) <= 4 and abs(box.y - result.face_box.y) <= 4


# -- client landmarks, 5-point model ----------------------------------------------------------


def test_client_landmarks_give_the_same_regions(analyzer: FaceAnalyzer, astronaut_result: FaceResult) -> None:
    points = [(p.x, p.y) for p in astronaut_result.landmarks]
    result = analyzer.contours_from_landmarks((512, 512), points, FaceParams().margin)
    assert result.regions == astronaut_result.regions
    assert result.svg == astronaut_result.svg
    assert result.rotation_degrees == astronaut_result.rotation_degrees
    assert result.crop == astronaut_result.crop
    # Without a detector box, the box is the landmarks' bounding box.
    assert result.face_box.width > 0 and result.face_box.height > 0


def test_five_point_model_aligns_without_regions(dlib_analyzer: FaceAnalyzer, astronaut: Image.Image) -> None:
    five = FaceAnalyzer("dlib", landmarks_model="5")
    assert len({five.version, dlib_analyzer.version, FaceAnalyzer.version}) == 3
    box, points = five.detect_landmarks(astronaut)
    assert len(points) == 5
    result = five.contours_from_landmarks(astronaut.size, points, 0.3, box=box)
    box68, points68 = dlib_analyzer.detect_landmarks(astronaut)
    full = dlib_analyzer.contours_from_landmarks(astronaut.size, points68, 0.3, box=box68)
    assert result.regions == {} and result.head_pose is None and result.mesh_regions == {}
    assert abs(result.rotation_degrees - full.rotation_degrees) < 3
    assert result.face_box == full.face_box
    assert ET.fromstring(result.svg).findall("svg:path", NS) == []
    with pytest.raises(ValueError):
        FaceAnalyzer("dlib", landmarks_model="7")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        FaceAnalyzer("opencv")  # type: ignore[arg-type]


def test_backends_agree_on_the_astronaut(
    dlib_analyzer: FaceAnalyzer, astronaut_result: FaceResult, tmp_path: Path
) -> None:
    dlib_result = dlib_analyzer.analyze(_source(tmp_path, Image.fromarray(data.astronaut())), FaceParams())
    assert isinstance(dlib_result, FaceResult)
    assert list(dlib_result.regions) == list(astronaut_result.regions) == list(REGION_NAMES)
    assert abs(dlib_result.rotation_degrees - astronaut_result.rotation_degrees) < 2
    assert abs(dlib_result.crop.width - astronaut_result.crop.width) <= 0.1 * dlib_result.crop.width
    assert dlib_result.mesh_regions == {} and dlib_result.head_pose is None


def test_mesh_adds_finer_regions_and_head_pose(astronaut_result: FaceResult) -> None:
    r = astronaut_result
    assert FaceAnalyzer.version == "mesh468-3"  # decoded at 1/8 for detection: old caches are not reused
    assert list(r.mesh_regions) == list(MESH_REGION_NAMES)
    assert set(MESH_REGION_NAMES) >= {"forehead", "right_cheek", "left_cheek", "chin", "nose_bridge"}
    boxes = {name: _bbox(d) for name, d in r.mesh_regions.items()}
    eyes = {name: _bbox(r.regions[name]) for name in ("right_eye", "left_eye")}
    assert boxes["forehead"][3] <= eyes["right_eye"][1]  # above the eyes
    assert boxes["right_cheek"][2] < boxes["left_cheek"][0]  # subject's right is image left
    assert boxes["right_under_eye"][1] >= eyes["right_eye"][1]
    assert boxes["chin"][1] > _bbox(r.regions["outer_lips"])[3] - 2
    assert r.head_pose is not None
    assert abs(r.head_pose.yaw) < 8 and -25 < r.head_pose.pitch < 0 and abs(r.head_pose.roll) < 8
    assert "forehead" not in r.svg  # the SVG keeps the contract's regions


def test_12mp_jpeg_is_found_at_full_resolution(
    analyzer: FaceAnalyzer, astronaut: Image.Image, tmp_path: Path
) -> None:
    # Latency is measured in bench/analyzers.py; here only the result of the big-photo path.
    big = astronaut.resize((4000, 3000), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=90)
    path = tmp_path / "12mp.jpg"
    path.write_bytes(buf.getvalue())
    result = analyzer.analyze(ImageSource("big", path), FaceParams())
    assert isinstance(result, FaceResult) and len(result.regions) == len(REGION_NAMES)
    assert result.face_box.width > 400


@pytest.mark.parametrize("quality", [70, 80, 92])
def test_the_real_face_wins_over_a_weak_larger_detection(
    quality: int, analyzer: FaceAnalyzer, dlib_analyzer: FaceAnalyzer
) -> None:
    # At these JPEG qualities dlib also reports a weak (score ~0.1), larger false positive
    # on the astronaut's suit; the face must be chosen by detection score, not by size.
    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, "JPEG", quality=quality)
    for backend in (analyzer, dlib_analyzer):
        box = backend.detect_box(load_gray(buf.getvalue()))
        assert 160 <= box.x <= 200 and 60 <= box.y <= 110, box
