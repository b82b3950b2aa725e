"""app.services.validation.settings: the structure walk's bounds follow their settings, and the
walks keep them."""

from __future__ import annotations

import pytest

from app.core.config import Settings
from app.core.errors import UndecodableImage
from app.core.formats import FORMATS
from app.services.validation.checks import check_structure, inspect_image
from app.services.validation.settings import DEFAULT_LIMITS, integrity_limits
from tests.services.validation.samples import mpo, png_with_text


def test_limits_come_from_settings() -> None:
    assert DEFAULT_LIMITS == integrity_limits(Settings(_env_file=None))
    tight = integrity_limits(Settings(_env_file=None, png_max_text_chunks=1, jpeg_max_images=1))
    assert (tight.png_max_text_chunks, tight.jpeg_max_images) == (1, 1)
    with pytest.raises(UndecodableImage):
        check_structure(png_with_text(), FORMATS["png"], tight)
    with pytest.raises(UndecodableImage):
        inspect_image(mpo(), FORMATS["jpeg"], 40_000_000, limits=tight)
