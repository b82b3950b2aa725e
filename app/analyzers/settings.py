"""The analyzers' settings sections, one per family, cut from `Settings` in the composition root.

`build_registry` takes an `AnalyzerSettings`: which analyzers to load, where the models are and
how many threads one inference uses, and each family's own section (the classifier's files and
default preprocessing, the face backend, skin-measure's quality gate).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from app.analyzers.classify.model_spec import ModelSpec
from app.analyzers.skin_measure.quality import QualityGate
from app.core.config import Settings


def model_spec(settings: Settings) -> ModelSpec:
    """The spec the MODEL_* settings describe (used where a model's metadata is silent)."""
    return ModelSpec(
        height=settings.model_input_size,
        width=settings.model_input_size,
        resize=settings.model_resize,
        crop_fraction=settings.model_crop_fraction,
        mean=settings.model_mean,
        std=settings.model_std,
        channels=settings.model_channels,
        layout=settings.model_layout,
        output=settings.model_output,
    )


def quality_gate(settings: Settings) -> QualityGate:
    """Skin-measure's quality gate configured by the SKIN_* settings."""
    return QualityGate(
        min_face_px=settings.skin_min_face_px,
        max_faces=settings.skin_max_faces,
        max_outside_fraction=settings.skin_max_outside_fraction,
        max_yaw=settings.skin_max_yaw_degrees,
        max_pitch=settings.skin_max_pitch_degrees,
        min_highlight_l=settings.skin_min_highlight_l,
        min_eye_white_l=settings.skin_min_eye_white_l,
        max_eye_white_l=settings.skin_max_eye_white_l,
        max_clipped_fraction=settings.skin_max_clipped_fraction,
        min_sharpness=settings.skin_min_sharpness,
        other_face_ratio=settings.skin_other_face_ratio,
    )


@dataclass(frozen=True)
class ClassifierSettings:
    """`classify`: the default model (MODEL_PATH, MODEL_LABELS), the named ones (MODELS) and the
    preprocessing of a model whose metadata is silent."""

    model_path: Path | None
    model_labels: Path | None
    models: Mapping[str, Path]
    defaults: ModelSpec

    @classmethod
    def from_settings(cls, settings: Settings) -> ClassifierSettings:
        return cls(settings.model_path, settings.model_labels, dict(settings.models), model_spec(settings))


@dataclass(frozen=True)
class FaceSettings:
    """`face`: the backend, and dlib's landmark model and detection size."""

    face_backend: Literal["mesh", "dlib"]
    face_landmarks: Literal["68", "5"]
    face_detect_max_side: int

    @classmethod
    def from_settings(cls, settings: Settings) -> FaceSettings:
        return cls(settings.face_backend, settings.face_landmarks, settings.face_detect_max_side)


@dataclass(frozen=True)
class AnalyzerSettings:
    """What `build_registry` loads (ANALYZERS), from where, and each family's section."""

    analyzers: frozenset[str]
    model_dir: Path
    onnx_intra_op_threads: int
    classify: ClassifierSettings
    face: FaceSettings
    skin_measure: QualityGate

    @classmethod
    def from_settings(cls, settings: Settings) -> AnalyzerSettings:
        return cls(
            analyzers=frozenset(settings.analyzers),
            model_dir=settings.model_dir,
            onnx_intra_op_threads=settings.onnx_intra_op_threads,
            classify=ClassifierSettings.from_settings(settings),
            face=FaceSettings.from_settings(settings),
            skin_measure=quality_gate(settings),
        )
