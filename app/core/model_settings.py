"""Settings of the classifier models (part of `Settings`): which ONNX files, their labels, and
the preprocessing of a model whose ONNX metadata does not state it (see app.analyzers.classify.model_spec)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode

MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
DEFAULT_MODEL = "default"  # the name of the model at MODEL_PATH; reserved in MODELS


class ModelSettings(BaseSettings):
    """Bring your own classifier: MODEL_PATH, MODEL_LABELS, MODELS and the MODEL_* preprocessing."""

    # The default classifier (seed 000's name); unset: MODEL_DIR/efficientnet_lite0.onnx. Labels:
    # MODEL_LABELS (one per line); unset: <model>.labels.txt beside it, else the ImageNet-1k names
    model_path: Path | None = None
    model_labels: Path | None = None
    # Further classifiers "name=path,..." (labels: <model>.labels.txt, else ImageNet-1k names),
    # picked by the `model` param of classify; each costs its file's size in memory
    models: Annotated[dict[str, Path], NoDecode] = {}
    # Preprocessing of a model whose metadata (and static input shape) does not say: square input
    # side; "crop" (resize to side / crop fraction, centre crop) or "stretch"; mean and std per
    # channel on the [0, 1] scale; channel order; tensor layout; what the output holds
    model_input_size: int = Field(default=224, ge=8, le=4096)
    model_resize: Literal["crop", "stretch"] = "crop"
    model_crop_fraction: float = Field(default=0.875, gt=0, le=1)
    model_mean: Annotated[tuple[float, float, float], NoDecode] = (0.5, 0.5, 0.5)
    model_std: Annotated[tuple[float, float, float], NoDecode] = (0.5, 0.5, 0.5)
    model_channels: Literal["RGB", "BGR"] = "RGB"
    model_layout: Literal["NCHW", "NHWC"] = "NCHW"
    model_output: Literal["logits", "probabilities"] = "logits"

    @field_validator("models", mode="before")
    @classmethod
    def _named_models(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        models: dict[str, Path] = {}
        for item in (part.strip() for part in value.split(",")):
            if not item:
                continue
            name, sep, path = item.partition("=")
            name = name.strip().lower()
            if not sep or not path.strip():
                raise ValueError(f"MODELS entries are name=path: {item!r}")
            if not MODEL_NAME.fullmatch(name) or name == DEFAULT_MODEL:
                raise ValueError(
                    f"model name {name!r}: lower-case letters, digits, '_', '.', '-' (at most 64), "
                    f"not {DEFAULT_MODEL!r}"
                )
            if name in models:
                raise ValueError(f"model {name!r} is named twice in MODELS")
            models[name] = Path(path.strip())
        return models

    @field_validator("model_mean", "model_std", mode="before")
    @classmethod
    def _three_numbers(cls, value: object) -> object:
        if isinstance(value, str):
            numbers = [float(item) for item in value.split(",") if item.strip()]
            return tuple(numbers * 3) if len(numbers) == 1 else tuple(numbers)
        return value

    @field_validator("model_std")
    @classmethod
    def _positive_std(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(value) <= 0:
            raise ValueError("MODEL_STD must be positive")
        return value
