"""Any ONNX image classifier (app.analyzers.classify.model_spec, OnnxClassifier): preprocessing from the
model's metadata, its static shape or settings; models that do not fit are refused in words.

The models are small real ones built with `onnx.helper` (tests/tiny_models.py): the class of
the brightest channel wins, so colours show what the service fed the model.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto
from PIL import Image

from app.analyzers.base import ImageSource
from app.analyzers.classify.analyzer import ClassifyParams, ClassifyResult, OnnxClassifier
from app.analyzers.classify.model_spec import ModelMismatch, ModelSpec
from app.analyzers.settings import model_spec
from app.core.config import Settings
from tests.tiny_models import labels_file, tiny_classifier

RGB = ["red", "green", "blue"]


def classify(model: OnnxClassifier, tmp_path: Path, image: Image.Image, k: int = 3) -> ClassifyResult:
    path = tmp_path / "image.png"
    image.save(path)
    result = model.analyze(ImageSource("00000000-0000-4000-8000-000000000000", path), ClassifyParams(top_k=k))
    assert isinstance(result, ClassifyResult)
    return result


def red(size: tuple[int, int] = (40, 30)) -> Image.Image:
    return Image.new("RGB", size, (255, 0, 0))


def softmax(scores: list[float]) -> list[float]:
    exps = [math.exp(s) for s in scores]
    return [e / sum(exps) for e in exps]


def test_labels_file_and_version_is_the_file_sha256(tmp_path: Path) -> None:
    model_path = tiny_classifier(tmp_path / "tiny.onnx")
    model = OnnxClassifier(model_path, labels_path=labels_file(tmp_path / "l.txt", RGB))
    assert model.version == hashlib.sha256(model_path.read_bytes()).hexdigest()
    assert model.spec == ModelSpec(height=8, width=8)  # static shape; the rest: defaults
    top = classify(model, tmp_path, red()).predictions
    assert [p.label for p in top][0] == "red" and top[0].class_id == 0
    # defaults: (x - 0.5) / 0.5 -> channel means 1, -1, -1
    assert top[0].probability == pytest.approx(softmax([1, -1, -1])[0], abs=1e-6)


def test_labels_beside_the_model_are_found(tmp_path: Path) -> None:
    model_path = tiny_classifier(tmp_path / "colours.onnx")
    labels_file(tmp_path / "colours.labels.txt", ["R", "G", "B"])
    assert OnnxClassifier(model_path).labels == ["R", "G", "B"]


def test_mean_and_std_from_metadata(tmp_path: Path) -> None:
    path = tiny_classifier(tmp_path / "m.onnx", metadata={"mean": "0", "std": "1,1,1"})
    model = OnnxClassifier(path, labels_path=labels_file(tmp_path / "l.txt", RGB))
    assert model.spec.mean == (0.0, 0.0, 0.0) and model.spec.std == (1.0, 1.0, 1.0)
    top = classify(model, tmp_path, red()).predictions[0]
    assert top.label == "red" and top.probability == pytest.approx(softmax([1, 0, 0])[0], abs=1e-6)


def test_bgr_model_gets_bgr(tmp_path: Path) -> None:
    # Its first input channel is blue: its labels say so; fed RGB it would call red "blue".
    path = tiny_classifier(tmp_path / "bgr.onnx", metadata={"channels": "BGR"})
    model = OnnxClassifier(path, labels_path=labels_file(tmp_path / "l.txt", ["blue", "green", "red"]))
    assert classify(model, tmp_path, red()).predictions[0].label == "red"
    blue = Image.new("RGB", (20, 20), (0, 0, 255))
    assert classify(model, tmp_path, blue).predictions[0].label == "blue"


def test_nhwc_from_the_static_shape_and_from_metadata(tmp_path: Path) -> None:
    labels = labels_file(tmp_path / "l.txt", RGB)
    static = OnnxClassifier(tiny_classifier(tmp_path / "a.onnx", layout="NHWC", size=12), labels_path=labels)
    assert (static.spec.layout, static.spec.height) == ("NHWC", 12)
    assert static.preprocess(red()).shape == (1, 12, 12, 3)
    assert classify(static, tmp_path, red()).predictions[0].label == "red"
    dynamic = tiny_classifier(tmp_path / "b.onnx", layout="NHWC", size="s", metadata={"layout": "NHWC"})
    model = OnnxClassifier(dynamic, labels_path=labels)
    assert model.spec.layout == "NHWC" and model.preprocess(red()).shape == (1, 224, 224, 3)
    assert classify(model, tmp_path, red()).predictions[0].label == "red"


def test_dynamic_size_from_metadata_else_settings(tmp_path: Path) -> None:
    labels = labels_file(tmp_path / "l.txt", RGB)
    settings = Settings(_env_file=None, model_input_size=16, model_resize="stretch", model_mean="0.25")
    defaults = model_spec(settings)
    dynamic = tiny_classifier(tmp_path / "a.onnx", size="s")
    plain = OnnxClassifier(dynamic, labels_path=labels, defaults=defaults)
    assert plain.spec == ModelSpec(height=16, width=16, resize="stretch", mean=(0.25, 0.25, 0.25))
    stated = tiny_classifier(tmp_path / "b.onnx", size="s", metadata={"input_size": "20", "resize": "crop"})
    model = OnnxClassifier(stated, labels_path=labels, defaults=defaults)
    assert (model.spec.height, model.spec.resize, model.spec.mean) == (20, "crop", (0.25, 0.25, 0.25))
    assert model.preprocess(red((300, 200))).shape == (1, 3, 20, 20)


def test_crop_and_stretch_see_different_pixels(tmp_path: Path) -> None:
    # 40% red | 20% green | 40% blue: the centre crop sees mostly green, the stretch little.
    image = Image.new("RGB", (300, 100), (255, 0, 0))
    image.paste((0, 255, 0), (120, 0, 180, 100))
    image.paste((0, 0, 255), (180, 0, 300, 100))
    labels = labels_file(tmp_path / "l.txt", RGB)
    cropping = tiny_classifier(tmp_path / "c.onnx", metadata={"resize": "crop"})
    stretching = tiny_classifier(tmp_path / "s.onnx", metadata={"resize": "stretch"})
    crop = OnnxClassifier(cropping, labels_path=labels)
    stretched = OnnxClassifier(stretching, labels_path=labels)
    assert classify(crop, tmp_path, image).predictions[0].label == "green"
    assert classify(stretched, tmp_path, image).predictions[-1].label == "green"


def test_model_that_outputs_probabilities_is_not_softmaxed_again(tmp_path: Path) -> None:
    path = tiny_classifier(tmp_path / "p.onnx", softmax=True, metadata={"output": "probabilities"})
    model = OnnxClassifier(path, labels_path=labels_file(tmp_path / "l.txt", RGB))
    top = classify(model, tmp_path, red()).predictions[0]
    assert top.probability == pytest.approx(softmax([1, -1, -1])[0], abs=1e-6)


def test_top_k_is_at_most_the_classes(tmp_path: Path) -> None:
    model = OnnxClassifier(tiny_classifier(tmp_path / "t.onnx"), labels_path=labels_file(tmp_path / "l", RGB))
    predictions = classify(model, tmp_path, red(), k=10).predictions
    assert [p.label for p in predictions] == ["red", "green", "blue"]
    assert sum(p.probability for p in predictions) == pytest.approx(1.0, abs=1e-5)


def test_spec_tensor_normalises_per_channel() -> None:
    spec = ModelSpec(height=4, width=4, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0), layout="NHWC")
    tensor = spec.tensor(Image.new("RGB", (10, 10), (51, 102, 255)))
    assert tensor.shape == (1, 4, 4, 3) and tensor.dtype == np.float32
    expected = [(0.2 - 0.1) / 0.5, (0.4 - 0.2) / 0.25, (1.0 - 0.3) / 2.0]
    assert np.allclose(tensor[0, 0, 0], expected, atol=1e-6)


def test_metadata_round_trips() -> None:
    from app.analyzers.classify.model_spec import spec_from_metadata

    spec = ModelSpec(height=260, width=260, crop_fraction=260 / 292, channels="BGR", layout="NHWC")
    assert spec_from_metadata(spec.metadata(), ModelSpec()) == spec


UNFIT = [
    ({"second_input": True}, "2 inputs ('image', 'bias')"),
    ({"element_type": TensorProto.UINT8}, "input 'image' is tensor(uint8), not a float32 image tensor"),
    ({"rank": 2}, "not an image batch (rank 4"),
    ({"channels": 1}, "1 channels in layout NCHW, 3 needed"),
    ({"batch": 4}, "fixed batch of 4"),
    ({"metadata": {"mean": "a,b"}}, "metadata mean='a,b' is not a list of numbers"),
    ({"metadata": {"layout": "CHW"}}, "metadata layout='CHW' is not one of NCHW, NHWC"),
    ({"metadata": {"input_size": "16"}}, "has shape ['N', 3, 8, 8] but metadata input_size='16'"),
    ({"metadata": {"std": "0"}}, "metadata std='0' is not positive"),
]


@pytest.mark.parametrize(("options", "message"), UNFIT)
def test_models_that_do_not_fit_say_why(tmp_path: Path, options: dict[str, object], message: str) -> None:
    path = tiny_classifier(tmp_path / "bad.onnx", **options)  # type: ignore[arg-type]
    with pytest.raises(ModelMismatch) as caught:
        OnnxClassifier(path, labels_path=labels_file(tmp_path / "l.txt", RGB))
    assert message in str(caught.value)


def test_outputs_must_match_the_labels(tmp_path: Path) -> None:
    path = tiny_classifier(tmp_path / "t.onnx")
    with pytest.raises(ModelMismatch, match=r"output 'scores' has shape \[1, 3\].*4 class scores"):
        OnnxClassifier(path, labels_path=labels_file(tmp_path / "l.txt", [*RGB, "black"]))
    five = tiny_classifier(tmp_path / "five.onnx", weights=np.ones((3, 5)))
    with pytest.raises(ModelMismatch, match="not ImageNet-1k's 1000 classes.*five.labels.txt"):
        OnnxClassifier(five)


def test_labels_with_a_gap_or_none_are_refused(tmp_path: Path) -> None:
    path = tiny_classifier(tmp_path / "t.onnx")
    (tmp_path / "gap.txt").write_text("red\n\nblue\n")
    with pytest.raises(ModelMismatch, match="line 2 is blank"):
        OnnxClassifier(path, labels_path=tmp_path / "gap.txt")
    (tmp_path / "none.txt").write_text("\n\n")
    with pytest.raises(ModelMismatch, match="no labels"):
        OnnxClassifier(path, labels_path=tmp_path / "none.txt")


def test_a_file_that_is_not_onnx(tmp_path: Path) -> None:
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    with pytest.raises(ModelMismatch, match="ONNX Runtime cannot load it"):
        OnnxClassifier(path)
