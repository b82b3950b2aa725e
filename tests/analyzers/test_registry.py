"""app.analyzers.registry: looking analyzers up by name (400 unknown, 503 not loaded) and
building the registry from settings, reporting an analyzer whose model is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.analyzers.registry import DEFAULT_ANALYZER, AnalyzerRegistry, build_registry
from app.analyzers.settings import AnalyzerSettings
from app.analyzers.skin import SkinAnalyzer
from app.core.config import Settings
from app.core.errors import AnalyzerUnavailable, UnknownAnalyzer
from tests.conftest import shared_registry


def test_get_returns_the_analyzer_of_that_name() -> None:
    skin = SkinAnalyzer()
    registry = AnalyzerRegistry([skin])
    assert registry.get("skin") is skin
    assert registry.names() == ["skin"]
    assert list(registry) == [skin]
    assert DEFAULT_ANALYZER in registry.names()


def test_an_unknown_name_is_400_naming_the_available_ones() -> None:
    registry = AnalyzerRegistry([SkinAnalyzer()], unavailable={"face": "no model"})
    with pytest.raises(UnknownAnalyzer) as caught:
        registry.get("colour")
    assert caught.value.status == 400
    assert caught.value.extra == {"available": ["skin"]}
    assert "available: skin" in caught.value.detail


def test_a_known_analyzer_that_failed_to_load_is_503_with_the_reason() -> None:
    registry = AnalyzerRegistry([SkinAnalyzer()], unavailable={"face": "landmarks.onnx is missing"})
    with pytest.raises(AnalyzerUnavailable, match="landmarks.onnx is missing") as caught:
        registry.get("face")
    assert caught.value.status == 503


def test_only_skin_is_built_when_no_model_backed_analyzer_is_asked_for(tmp_path: Path) -> None:
    registry = build_registry(
        AnalyzerSettings.from_settings(Settings(_env_file=None, model_dir=tmp_path, analyzers=[]))
    )
    assert registry.names() == ["skin"] and registry.unavailable == {}


def test_a_missing_model_makes_its_analyzer_unavailable_not_the_service(tmp_path: Path) -> None:
    registry = build_registry(
        AnalyzerSettings.from_settings(
            Settings(_env_file=None, model_dir=tmp_path / "empty", analyzers=["classify"])
        )
    )
    assert registry.names() == ["skin"]
    assert set(registry.unavailable) == {"classify"} and registry.unavailable["classify"]
    with pytest.raises(AnalyzerUnavailable):
        registry.get("classify")


def test_the_built_models_load_every_analyzer() -> None:
    assert shared_registry().names() == ["classify", "face", "skin", "skin-measure"]
