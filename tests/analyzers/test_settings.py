"""app.analyzers.settings: each analyzer family's section follows its env vars."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from app.analyzers.classify.model_spec import ModelSpec
from app.analyzers.settings import AnalyzerSettings
from app.analyzers.skin_measure.quality import QualityGate
from app.core.config import Settings


def test_the_sections_follow_their_env_vars(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in {
        "ANALYZERS": "classify,skin-measure",
        "MODEL_DIR": str(tmp_path),
        "ONNX_THREADS": "3",
        "MODEL_PATH": str(tmp_path / "mine.onnx"),
        "MODELS": "lite2=/models/lite2.onnx",
        "MODEL_INPUT_SIZE": "260",
        "MODEL_RESIZE": "stretch",
        "MODEL_MEAN": "0.25",
        "FACE_BACKEND": "dlib",
        "FACE_LANDMARKS": "5",
        "SKIN_MIN_FACE_PX": "120",
        "SKIN_MAX_YAW_DEGREES": "10",
        "SKIN_MAX_CLIPPED_FRACTION": "0.3",
    }.items():
        monkeypatch.setenv(name, value)
    section = AnalyzerSettings.from_settings(Settings(_env_file=None))
    assert section.analyzers == {"classify", "skin-measure"}
    assert (section.model_dir, section.onnx_intra_op_threads) == (tmp_path, 3)
    assert section.classify.model_path == tmp_path / "mine.onnx"
    assert section.classify.models == {"lite2": Path("/models/lite2.onnx")}
    assert section.classify.defaults == ModelSpec(
        height=260, width=260, resize="stretch", mean=(0.25, 0.25, 0.25)
    )
    assert (section.face.face_backend, section.face.face_landmarks) == ("dlib", "5")
    gate = section.skin_measure
    assert (gate.min_face_px, gate.max_yaw, gate.max_clipped_fraction) == (120, 10.0, 0.3)


def test_the_defaults_are_the_settings_defaults() -> None:
    section = AnalyzerSettings.from_settings(Settings(_env_file=None))
    assert section.skin_measure == QualityGate()  # the gate's own defaults match the settings'
    assert section.classify.defaults == ModelSpec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        section.model_dir = Path("/elsewhere")  # type: ignore[misc]
