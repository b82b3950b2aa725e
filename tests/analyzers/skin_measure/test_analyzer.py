"""`skin-measure`: metamorphic tests on the astronaut and controlled edits of it, the quality gate,
determinism, params, summary rules and the overlay."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter
from pydantic import ValidationError
from skimage import color, data

from app.analyzers.face.analyzer import FaceAnalyzer
from app.analyzers.face.mesh_backend import decode, find_face
from app.analyzers.face.mesh_models import FaceMesh
from app.analyzers.face.mesh_regions import MESH_REGION_NAMES, polygons
from app.analyzers.registry import build_registry
from app.analyzers.settings import AnalyzerSettings
from app.analyzers.skin import SKIN_ISSUES, SKIN_TYPES
from app.analyzers.skin_measure.analyzer import SkinMeasureAnalyzer, summarize
from app.analyzers.skin_measure.models import SkinMeasureParams, SkinMeasureResult
from app.analyzers.skin_measure.quality import QualityGate
from app.core.config import Settings
from app.core.errors import (
    FaceOutOfFrame,
    FaceTooSmall,
    HeadTurned,
    ImageBlurred,
    ImageOverexposed,
    ImageTooDark,
    MultipleFaces,
    NoFaceDetected,
)
from tests.conftest import MODEL_DIR

PARAMS = SkinMeasureParams()


@pytest.fixture(scope="module")
def base(analyzer: SkinMeasureAnalyzer, astronaut: Image.Image) -> SkinMeasureResult:
    return analyzer.measure(astronaut, PARAMS)


def region_weight(mesh: FaceMesh, image: Image.Image, names: tuple[str, ...]) -> np.ndarray:
    """A feathered 0-1 mask (H, W, 1) of some mesh regions of the image's face."""
    regions = polygons(find_face(mesh, decode(image), 80).mesh)
    canvas = Image.new("L", image.size, 0)
    for name in names:
        ImageDraw.Draw(canvas).polygon([(float(x), float(y)) for x, y in regions[name]], fill=255)
    return (np.asarray(canvas.filter(ImageFilter.GaussianBlur(2)), dtype=np.float64) / 255.0)[..., None]


def edit(image: Image.Image, weight: np.ndarray, target: np.ndarray) -> Image.Image:
    """`image` blended towards `target` (H, W, 3) by `weight`."""
    arr = np.asarray(image, dtype=np.float64)
    return Image.fromarray(np.clip(np.rint(arr + weight * (target - arr)), 0, 255).astype(np.uint8))


def jpeg(image: Image.Image, **options: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=95, **options)
    return buf.getvalue()


# -- the astronaut ---------------------------------------------------------------------------------


def test_astronaut_measurements(base: SkinMeasureResult) -> None:
    m = base.metrics
    assert list(base.regions) == list(MESH_REGION_NAMES)
    assert all(r.pixels > 300 for r in base.regions.values())
    # Light skin under studio light (Eileen Collins, NASA portrait).
    assert 45 < m.tone.value < 70 and m.tone.category in ("light", "very light") and m.tone.unit == "ITA°"
    assert 2 <= m.tone.monk <= 5
    assert 4 < m.redness.value < 14 and set(m.redness.regions) == set(MESH_REGION_NAMES)
    assert -5 < m.dark_circles.value < 3
    for metric in (m.tone, m.redness, m.shine, m.texture, m.dark_circles, m.spots):
        assert 0 <= metric.score <= 100 and metric.unit
    assert base.skin_type in SKIN_TYPES and set(base.issues) <= set(SKIN_ISSUES) and len(base.issues) <= 3
    assert 0.70 <= base.confidence <= 0.99
    assert base.quality.white_balance.status == "ok" and base.quality.face_px >= 80
    assert abs(base.quality.head_pose.yaw) < 8


def test_results_are_byte_identical_across_runs(
    mesh: FaceMesh, astronaut: Image.Image, tmp_path: Path
) -> None:
    path = tmp_path / "a.jpg"
    path.write_bytes(jpeg(astronaut))
    first = SkinMeasureAnalyzer(mesh).measure(path, PARAMS).model_dump_json()
    again = SkinMeasureAnalyzer(FaceMesh(MODEL_DIR)).measure(path.read_bytes(), PARAMS).model_dump_json()
    assert first == again


def test_overlay_outlines_the_measured_regions(base: SkinMeasureResult) -> None:
    assert base.svg is not None
    root = ET.fromstring(base.svg)
    assert root.get("viewBox") == "0 0 512 512"
    paths = [el for el in root.iter() if el.tag.endswith("path")]
    assert [p.get("id") for p in paths] == list(MESH_REGION_NAMES)
    assert all(p.get("fill-opacity") == "0.35" for p in paths)


# -- controlled edits ------------------------------------------------------------------------------


def test_red_cheeks_raise_redness_and_little_else(
    analyzer: SkinMeasureAnalyzer, mesh: FaceMesh, astronaut: Image.Image, base: SkinMeasureResult
) -> None:
    w = region_weight(mesh, astronaut, ("right_cheek", "left_cheek"))
    lab = color.rgb2lab(np.asarray(astronaut))
    lab[..., 1] += 8.0  # redder by 8 a*, the same L* and b*
    red = edit(astronaut, w, np.clip(color.lab2rgb(lab), 0, 1) * 255.0)
    got, ref = analyzer.measure(red, PARAMS).metrics, base.metrics
    assert got.redness.value > ref.redness.value + 3 and got.redness.score > ref.redness.score
    for cheek in ("right_cheek", "left_cheek"):
        assert got.redness.regions[cheek].erythema_index > ref.redness.regions[cheek].erythema_index + 3
    assert abs(got.redness.regions["forehead"].a - ref.redness.regions["forehead"].a) < 0.5
    assert abs(got.tone.value - ref.tone.value) < 6
    assert abs(got.texture.value - ref.texture.value) < 0.15 * ref.texture.value
    assert (
        abs(got.shine.value - ref.shine.value) < 1
        and abs(got.dark_circles.value - ref.dark_circles.value) < 2
    )


def test_lighter_skin_raises_ita(
    analyzer: SkinMeasureAnalyzer, mesh: FaceMesh, astronaut: Image.Image, base: SkinMeasureResult
) -> None:
    w = region_weight(mesh, astronaut, MESH_REGION_NAMES)
    arr = np.asarray(astronaut, dtype=np.float64)
    light = edit(astronaut, w, arr + 0.2 * (255 - arr))
    got = analyzer.measure(light, PARAMS).metrics
    assert got.tone.value > base.metrics.tone.value + 5 and got.tone.score > base.metrics.tone.score
    assert got.tone.monk <= base.metrics.tone.monk
    dark = edit(astronaut, w, arr * 0.8)
    assert analyzer.measure(dark, PARAMS).metrics.tone.value < base.metrics.tone.value - 10


def test_specular_spots_on_the_forehead_raise_shine(
    analyzer: SkinMeasureAnalyzer, mesh: FaceMesh, astronaut: Image.Image, base: SkinMeasureResult
) -> None:
    forehead = polygons(find_face(mesh, decode(astronaut), 80).mesh)["forehead"]
    upper, lower = forehead[:7], forehead[7:][::-1]
    canvas = Image.new("L", astronaut.size, 0)
    draw = ImageDraw.Draw(canvas)
    for k in (1, 3, 5):  # three highlights of ~3 px in the middle of the forehead
        x, y = (upper[k] + lower[k]) / 2
        draw.ellipse((x - 1.5, y - 1.5, x + 1.5, y + 1.5), fill=255)
    w = (np.asarray(canvas.filter(ImageFilter.GaussianBlur(0.7)), dtype=np.float64) / 255.0)[..., None]
    shiny = edit(astronaut, w, np.full((512, 512, 3), 245.0))
    got = analyzer.measure(shiny, PARAMS).metrics
    assert got.shine.value > base.metrics.shine.value + 1.5 and got.shine.score > base.metrics.shine.score
    assert abs(got.shine.cheeks - base.metrics.shine.cheeks) < 0.5
    assert abs(got.redness.value - base.metrics.redness.value) < 0.5


def test_blur_lowers_texture_then_trips_the_gate(
    analyzer: SkinMeasureAnalyzer, astronaut: Image.Image, base: SkinMeasureResult
) -> None:
    soft = analyzer.measure(astronaut.filter(ImageFilter.GaussianBlur(0.5)), PARAMS)
    assert soft.metrics.texture.value < base.metrics.texture.value
    assert soft.quality.sharpness < base.quality.sharpness
    with pytest.raises(ImageBlurred) as exc:
        analyzer.measure(astronaut.filter(ImageFilter.GaussianBlur(2)), PARAMS)
    assert exc.value.code == "image_blurred" and exc.value.status == 422
    assert exc.value.extra["sharpness"] < exc.value.extra["min_sharpness"]


def test_exposure_gate(analyzer: SkinMeasureAnalyzer, astronaut: Image.Image) -> None:
    arr = np.asarray(astronaut, dtype=np.float64)
    with pytest.raises(ImageTooDark) as dark:
        analyzer.measure(Image.fromarray((arr * 0.3).astype(np.uint8)), PARAMS)
    assert dark.value.code == "image_too_dark" and dark.value.status == 422
    with pytest.raises(ImageOverexposed) as bright:
        analyzer.measure(Image.fromarray(np.clip(arr * 1.6, 0, 255).astype(np.uint8)), PARAMS)
    assert bright.value.code == "image_overexposed"


def test_exif_rotated_copy_gives_the_same_values(
    analyzer: SkinMeasureAnalyzer, astronaut: Image.Image, tmp_path: Path
) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated 90° counter-clockwise, "rotate 90° clockwise to display"
    upright = analyzer.measure(jpeg(astronaut), PARAMS).metrics
    rotated = analyzer.measure(
        jpeg(astronaut.transpose(Image.Transpose.ROTATE_90), exif=exif), PARAMS
    ).metrics
    assert abs(rotated.tone.value - upright.tone.value) < 1.5
    assert abs(rotated.redness.value - upright.redness.value) < 0.5
    assert abs(rotated.texture.value - upright.texture.value) < 0.15 * upright.texture.value
    assert abs(rotated.dark_circles.value - upright.dark_circles.value) < 1
    assert abs(rotated.shine.value - upright.shine.value) < 1.5


@pytest.mark.parametrize("name", ["coffee", "rocket"])
def test_a_photo_without_a_face(analyzer: SkinMeasureAnalyzer, name: str) -> None:
    with pytest.raises(NoFaceDetected) as exc:
        analyzer.measure(Image.fromarray(getattr(data, name)()), PARAMS)
    assert exc.value.code == "no_face_detected" and exc.value.status == 422


def test_size_faces_and_pose_gates(
    mesh: FaceMesh, analyzer: SkinMeasureAnalyzer, astronaut: Image.Image
) -> None:
    with pytest.raises(FaceTooSmall) as small:
        analyzer.measure(astronaut.resize((200, 200), Image.Resampling.LANCZOS), PARAMS)
    assert small.value.code == "face_too_small" and small.value.extra["face_px"] < 80
    face = astronaut.crop((110, 10, 340, 240))
    pair = Image.new("RGB", (460, 230))
    pair.paste(face, (0, 0))
    pair.paste(face, (230, 0))
    with pytest.raises(MultipleFaces) as two:
        analyzer.measure(pair, PARAMS)
    assert two.value.code == "multiple_faces" and two.value.extra["faces"] == 2
    assert SkinMeasureAnalyzer(mesh, QualityGate(max_faces=2)).measure(pair, PARAMS).skin_type in SKIN_TYPES
    with pytest.raises(HeadTurned) as turned:
        SkinMeasureAnalyzer(mesh, QualityGate(max_yaw=0.5)).measure(astronaut, PARAMS)
    assert turned.value.code == "head_turned"


def test_face_out_of_frame(analyzer: SkinMeasureAnalyzer, astronaut: Image.Image) -> None:
    cut = astronaut.crop((0, 0, 512, 150))  # the frame ends at the nose
    with pytest.raises(FaceOutOfFrame) as exc:
        analyzer.measure(cut, PARAMS)
    assert exc.value.code == "face_out_of_frame" and exc.value.extra["outside_fraction"] > 0


# -- params and rules ------------------------------------------------------------------------------


def test_params(analyzer: SkinMeasureAnalyzer, astronaut: Image.Image, base: SkinMeasureResult) -> None:
    assert SkinMeasureParams().spot_min_delta_l == 5.0 and SkinMeasureParams().overlay is True
    with pytest.raises(ValidationError):
        SkinMeasureParams.model_validate({"smooth": True})
    with pytest.raises(ValidationError):
        SkinMeasureParams(spot_min_delta_l=0)
    bare = analyzer.measure(astronaut, SkinMeasureParams(overlay=False))
    assert bare.svg is None and bare.metrics == base.metrics
    keen = analyzer.measure(astronaut, SkinMeasureParams(spot_min_delta_l=2.0)).metrics.spots
    assert keen.area_percent > base.metrics.spots.area_percent and keen.value >= base.metrics.spots.value


def test_summary_rules(base: SkinMeasureResult) -> None:
    m = base.metrics.model_copy(deep=True)
    m.shine.value, m.shine.cheeks = 5.0, 2.0
    assert summarize(m)[0] == "Oily"
    m.shine.cheeks = 0.5
    assert summarize(m)[0] == "Combination"
    m.shine.value, m.redness.score = 1.0, 70
    assert summarize(m) == ("Sensitive", ["Redness"])
    m.redness.score, m.texture.score, m.shine.value = 10, 65, 0.2
    assert summarize(m)[0] == "Dry"
    m.dark_circles.score, m.spots.score, m.redness.score = 80, 55, 90
    assert summarize(m)[1] == ["Redness", "Dark circles", "Uneven texture"]


# -- registry and settings -------------------------------------------------------------------------


def test_registry_loads_it_beside_the_mock_and_shares_the_mesh() -> None:
    settings = Settings(_env_file=None, model_dir=MODEL_DIR, onnx_threads=1)
    assert settings.analyzers == ["classify", "face", "skin-measure"] and settings.face_backend == "mesh"
    registry = build_registry(AnalyzerSettings.from_settings(settings))
    assert not registry.unavailable
    measure, face, mock = registry.get("skin-measure"), registry.get("face"), registry.get("skin")
    assert isinstance(measure, SkinMeasureAnalyzer) and isinstance(face, FaceAnalyzer)
    assert measure.model_backed and not mock.model_backed and measure.version == "mesh468-skin-3"
    assert measure.mesh is face._mesh  # one set of ONNX sessions
    schema = measure.params_model.model_json_schema()
    assert (
        set(schema["properties"]) == {"spot_min_delta_l", "overlay"}
        and schema["additionalProperties"] is False
    )
    gate = measure.gate
    assert (gate.min_face_px, gate.max_yaw, gate.min_sharpness) == (80, 25.0, 40.0)


def test_settings_configure_the_gate_and_the_backend() -> None:
    settings = Settings(
        _env_file=None,
        model_dir=MODEL_DIR,
        analyzers="face,skin-measure",
        face_backend="dlib",
        skin_min_face_px=120,
        skin_max_yaw_degrees=10,
    )
    registry = build_registry(AnalyzerSettings.from_settings(settings))
    assert registry.names() == ["face", "skin", "skin-measure"]
    assert registry.get("face").version == "dlib68-2"
    gate = AnalyzerSettings.from_settings(settings).skin_measure
    assert gate.min_face_px == 120 and gate.max_yaw == 10
    with pytest.raises(ValidationError):
        Settings(_env_file=None, analyzers="skin-measure,skin-guess")
    with pytest.raises(ValidationError):
        Settings(_env_file=None, face_backend="opencv")
