"""Small real ONNX classifiers built with `onnx.helper`, for the bring-your-own-model tests.

The classifier: the mean of each input channel (ReduceMean over the image), times a weight
matrix (channels x classes) = the class scores; with the identity matrix, the class of the
brightest channel wins. Options break it in the ways a model may not fit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def tiny_classifier(
    path: Path,
    *,
    weights: np.ndarray | None = None,
    layout: str = "NCHW",
    size: int | str = 8,
    channels: int = 3,
    metadata: dict[str, str] | None = None,
    softmax: bool = False,
    second_input: bool = False,
    element_type: int = TensorProto.FLOAT,
    rank: int = 4,
    batch: int | str = "N",
) -> Path:
    """Write the model to `path` (its bytes depend on every argument) and return `path`."""
    w = np.eye(channels, dtype=np.float32) if weights is None else np.asarray(weights, np.float32)
    classes = w.shape[1]
    if rank == 4:
        spatial = [size, size]
        dims = [batch, channels, *spatial] if layout == "NCHW" else [batch, *spatial, channels]
        axes = [2, 3] if layout == "NCHW" else [1, 2]
    else:
        dims, axes = [batch, channels], []
    image = helper.make_tensor_value_info("image", element_type, dims)
    inputs = [image]
    nodes = []
    current = "image"
    if element_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", [current], ["as_float"], to=TensorProto.FLOAT))
        current = "as_float"
    if axes:
        nodes.append(helper.make_node("ReduceMean", [current], ["means"], axes=axes, keepdims=0))
        current = "means"
    if second_input:
        inputs.append(helper.make_tensor_value_info("bias", TensorProto.FLOAT, [batch, channels]))
        nodes.append(helper.make_node("Add", [current, "bias"], ["biased"]))
        current = "biased"
    nodes.append(helper.make_node("MatMul", [current, "weights"], ["scores"]))
    output = "scores"
    if softmax:
        nodes.append(helper.make_node("Softmax", ["scores"], ["probs"], axis=-1))
        output = "probs"
    graph = helper.make_graph(
        nodes,
        "tiny",
        inputs,
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, [batch, classes])],
        initializer=[numpy_helper.from_array(w, "weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata:
        helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def labels_file(path: Path, labels: list[str]) -> Path:
    """`labels`, one per line, in `path`."""
    path.write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")
    return path
