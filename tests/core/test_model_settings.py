"""Model settings (app.core.model_settings): MODELS and MODEL_MEAN/STD parsing, every one documented."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.core.config import Settings
from app.core.model_settings import ModelSettings

ROOT = Path(__file__).resolve().parents[2]


def test_models_are_name_equals_path() -> None:
    parsed = Settings(_env_file=None, models=" Lite2 = models/a.onnx , b=/x/b.onnx,")
    assert parsed.models == {"lite2": Path("models/a.onnx"), "b": Path("/x/b.onnx")}
    assert Settings(_env_file=None).models == {}


@pytest.mark.parametrize("bad", ["default=a.onnx", "a", "a=", "a=x.onnx,a=y.onnx", "no spaces=x.onnx"])
def test_bad_models_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, models=bad)


def test_mean_and_std_take_one_or_three_numbers() -> None:
    assert Settings(_env_file=None, model_mean="0.485,0.456,0.406").model_mean == (0.485, 0.456, 0.406)
    assert Settings(_env_file=None, model_std="0.25").model_std == (0.25, 0.25, 0.25)
    for bad in ({"model_std": "1,0,1"}, {"model_mean": "1,2"}, {"model_crop_fraction": 0}):
        with pytest.raises(ValidationError):
            Settings(_env_file=None, **bad)


@pytest.mark.parametrize("document", ["README.md", ".env.example"])
def test_every_model_setting_is_documented(document: str) -> None:
    text = (ROOT / document).read_text()
    assert [name.upper() for name in ModelSettings.model_fields if name.upper() not in text] == []
