"""What one ONNX image classifier expects: its preprocessing and whether it fits at all.

A model states its preprocessing in its ONNX metadata (`metadata_props`, all optional):

    input_size     "260" (square side; a static input shape states it too)
    resize         "crop" (short side to input_size / crop_fraction, centre crop) or "stretch"
    crop_fraction  "0.875"
    mean, std      "0.5,0.5,0.5" (per channel, on the [0, 1] pixel scale; one number: all three)
    channels       "RGB" or "BGR"
    layout         "NCHW" or "NHWC" (a static input shape with 3 on one side only states it too)
    output         "logits" (softmax applied here) or "probabilities"

What the metadata does not state comes from the model's static input shape, then from settings
(`MODEL_INPUT_SIZE`, `MODEL_RESIZE`, ...: app.core.model_settings). A model fits when it has
exactly one input, a float32 image tensor of rank 4 with 3 channels (batch 1 or dynamic), and
its first output gives one score per label; `fit` says in words what does not fit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal, cast

import numpy as np
from PIL import Image

METADATA_KEYS = ("input_size", "resize", "crop_fraction", "mean", "std", "channels", "layout", "output")

Dim = int | str | None  # an ONNX Runtime shape entry: a size, a symbolic name, or unknown


class ModelMismatch(ValueError):
    """The model is not an image classifier this service can run (the message says why)."""


@dataclass(frozen=True)
class ModelSpec:
    """The preprocessing of one classifier and the meaning of its output."""

    height: int = 224
    width: int = 224
    resize: Literal["crop", "stretch"] = "crop"
    crop_fraction: float = 0.875
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    channels: Literal["RGB", "BGR"] = "RGB"
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    output: Literal["logits", "probabilities"] = "logits"

    def metadata(self) -> dict[str, str]:
        """This spec as ONNX metadata_props (what an exporter writes into the model)."""
        return {
            "input_size": str(self.height) if self.height == self.width else f"{self.height},{self.width}",
            "resize": self.resize,
            "crop_fraction": repr(self.crop_fraction),
            "mean": ",".join(repr(m) for m in self.mean),
            "std": ",".join(repr(s) for s in self.std),
            "channels": self.channels,
            "layout": self.layout,
            "output": self.output,
        }

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """The input tensor's shape for one image."""
        if self.layout == "NCHW":
            return (1, 3, self.height, self.width)
        return (1, self.height, self.width, 3)

    def _resized_size(self, width: int, height: int) -> tuple[int, int]:
        """ "crop": the size the image is resized to before the centre crop (its binding side to
        the input side / crop fraction, the other in proportion, truncated as torchvision does)."""
        target_w, target_h = self.width / self.crop_fraction, self.height / self.crop_fraction
        if width * target_h <= height * target_w:  # the width binds
            new_w = round(target_w)
            return new_w, max(int(new_w * height / width), self.height)
        new_h = round(target_h)
        return max(int(new_h * width / height), self.width), new_h

    def decode_min_size(self) -> tuple[int, int]:
        """The least (width, height) a JPEG draft decode may reduce an image to."""
        if self.resize == "stretch":
            return (self.width, self.height)
        side = max(round(self.width / self.crop_fraction), round(self.height / self.crop_fraction))
        return (side, side)

    def resize_and_crop(self, image: Image.Image) -> Image.Image:
        """The image at the model's input size: "stretch" resizes; "crop" resizes then centre
        crops in one bilinear resample of the crop's source box (Pillow's `box=`: the filter
        taps of a full resize and crop, but memory of the crop only, whatever the aspect ratio).
        """
        if self.resize == "stretch":
            return image.resize((self.width, self.height), Image.Resampling.BILINEAR)
        width, height = image.size
        new_w, new_h = self._resized_size(width, height)
        left = int(round((new_w - self.width) / 2.0))
        top = int(round((new_h - self.height) / 2.0))
        scale_x, scale_y = width / new_w, height / new_h
        box = (
            left * scale_x,
            top * scale_y,
            (left + self.width) * scale_x,
            (top + self.height) * scale_y,
        )
        return image.resize((self.width, self.height), Image.Resampling.BILINEAR, box=box)

    def tensor(self, image: Image.Image) -> np.ndarray:
        """An image to the model's input: float32, shape `self.shape`, C-contiguous."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        pixels = np.asarray(self.resize_and_crop(image), dtype=np.float32)
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        normalized = (pixels / 255.0 - mean) / std
        if self.channels == "BGR":
            normalized = normalized[..., ::-1]
        if self.layout == "NCHW":
            normalized = normalized.transpose(2, 0, 1)
        return np.ascontiguousarray(normalized[np.newaxis])


@dataclass(frozen=True)
class FittedModel:
    """A model that fits: its spec, and the names of its image input and of its scores output."""

    spec: ModelSpec
    input_name: str
    output_name: str


def _numbers(key: str, value: str) -> tuple[float, float, float]:
    try:
        numbers = [float(item) for item in value.split(",") if item.strip()]
    except ValueError:
        raise ModelMismatch(f"metadata {key}={value!r} is not a list of numbers") from None
    if len(numbers) == 1:
        numbers *= 3
    if len(numbers) != 3 or not all(np.isfinite(numbers)):
        raise ModelMismatch(f"metadata {key}={value!r} is not 1 or 3 finite numbers")
    return (numbers[0], numbers[1], numbers[2])


def _choice(key: str, value: str, choices: Sequence[str]) -> str:
    for choice in choices:
        if value.strip().lower() == choice.lower():
            return choice
    raise ModelMismatch(f"metadata {key}={value!r} is not one of {', '.join(choices)}")


def spec_from_metadata(metadata: Mapping[str, str], defaults: ModelSpec) -> ModelSpec:
    """`defaults` with what the model's metadata states (see the module docstring)."""
    changes: dict[str, object] = {}
    if "input_size" in metadata:
        raw = metadata["input_size"]
        try:
            sizes = [int(item) for item in raw.replace("x", ",").split(",")]
        except ValueError:
            raise ModelMismatch(f"metadata input_size={raw!r} is not a size like '224'") from None
        if len(sizes) == 1:
            sizes *= 2
        if len(sizes) != 2 or not all(8 <= s <= 4096 for s in sizes):
            raise ModelMismatch(f"metadata input_size={raw!r} is not one or two sides of 8..4096")
        changes["height"], changes["width"] = sizes
    if "resize" in metadata:
        changes["resize"] = _choice("resize", metadata["resize"], ("crop", "stretch"))
    if "crop_fraction" in metadata:
        raw = metadata["crop_fraction"]
        try:
            fraction = float(raw)
        except ValueError:
            fraction = float("nan")
        if not 0 < fraction <= 1:
            raise ModelMismatch(f"metadata crop_fraction={raw!r} is not a number in (0, 1]")
        changes["crop_fraction"] = fraction
    for key in ("mean", "std"):
        if key in metadata:
            changes[key] = _numbers(key, metadata[key])
    if "std" in changes and min(cast(tuple[float, ...], changes["std"])) <= 0:
        raise ModelMismatch(f"metadata std={metadata['std']!r} is not positive")
    if "channels" in metadata:
        changes["channels"] = _choice("channels", metadata["channels"], ("RGB", "BGR"))
    if "layout" in metadata:
        changes["layout"] = _choice("layout", metadata["layout"], ("NCHW", "NHWC"))
    if "output" in metadata:
        changes["output"] = _choice("output", metadata["output"], ("logits", "probabilities"))
    return replace(defaults, **changes)  # type: ignore[arg-type]


def _static(dim: Dim) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


def fit_input(
    name: str, element_type: str, shape: Sequence[Dim], metadata: Mapping[str, str], defaults: ModelSpec
) -> ModelSpec:
    """The spec of a model whose one input is `name` (type and shape as ONNX Runtime reports
    them): metadata first, then the static shape, then `defaults`; ModelMismatch if it cannot
    take an image."""
    if element_type != "tensor(float)":
        raise ModelMismatch(f"input {name!r} is {element_type}, not a float32 image tensor")
    if len(shape) != 4:
        raise ModelMismatch(
            f"input {name!r} has shape {list(shape)}: not an image batch (rank 4, NCHW or NHWC)"
        )
    batch, b, c, d = (_static(dim) for dim in shape)
    if batch not in (None, 1):
        raise ModelMismatch(f"input {name!r} has a fixed batch of {batch}; 1 or dynamic is needed")
    if "layout" not in metadata:
        if b == 3 and d != 3:
            defaults = replace(defaults, layout="NCHW")
        elif d == 3 and b != 3:
            defaults = replace(defaults, layout="NHWC")
    spec = spec_from_metadata(metadata, defaults)
    channels, height, width = (b, c, d) if spec.layout == "NCHW" else (d, b, c)
    if channels not in (None, 3):
        raise ModelMismatch(
            f"input {name!r} has shape {list(shape)}: {channels} channels in layout {spec.layout}, 3 needed"
        )
    if height is not None or width is not None:
        stated = "input_size" in metadata
        if stated and (height not in (None, spec.height) or width not in (None, spec.width)):
            raise ModelMismatch(
                f"input {name!r} has shape {list(shape)} but metadata input_size={metadata['input_size']!r}"
            )
        spec = replace(spec, height=height or spec.height, width=width or spec.width)
    return spec


def check_scores(output_name: str, scores_shape: Sequence[int], labels: int) -> None:
    """ModelMismatch unless one image's output `output_name` holds one score per label."""
    per_image = [int(dim) for dim in scores_shape[1:] if int(dim) != 1]
    if len(scores_shape) < 1 or scores_shape[0] != 1 or per_image != [labels]:
        raise ModelMismatch(
            f"output {output_name!r} has shape {list(scores_shape)} for one image: "
            f"{labels} class scores (one per label) are needed"
        )
