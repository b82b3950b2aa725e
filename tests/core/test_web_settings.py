"""Web settings (app.core.web_settings): PREVIEW_WIDTHS parsing and bounds, every one documented."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.core.config import Settings
from app.core.web_settings import WebSettings

ROOT = Path(__file__).resolve().parents[2]


def test_preview_widths_are_a_sorted_set_of_integers() -> None:
    assert Settings(_env_file=None, preview_widths=" 512, 64,64 ,128").preview_widths == [64, 128, 512]
    assert Settings(_env_file=None).preview_widths == [64, 128, 256, 512, 1024]


@pytest.mark.parametrize("bad", ["", "15", "4097", "64,abc", "0"])
def test_bad_preview_widths_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, preview_widths=bad)


@pytest.mark.parametrize("quality", [0, 96])
def test_preview_quality_is_bounded(quality: int) -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, preview_jpeg_quality=quality)


@pytest.mark.parametrize("document", ["README.md", ".env.example"])
def test_every_web_setting_is_documented(document: str) -> None:
    text = (ROOT / document).read_text()
    assert [name.upper() for name in WebSettings.model_fields if name.upper() not in text] == []
