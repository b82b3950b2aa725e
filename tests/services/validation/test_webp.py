"""app.services.validation.webp: the WebP RIFF walk -- ordinary WebPs pass, hostile ones fail."""

from __future__ import annotations

import pytest

from app.core.errors import UndecodableImage
from app.core.formats import FORMATS
from app.services.validation.checks import inspect_image
from app.services.validation.webp import check_webp_structure
from tests.services.validation.samples import limits, webp_hostile, webp_ok


@pytest.mark.parametrize(("name", "body"), webp_hostile().items(), ids=webp_hostile().keys())
def test_hostile_webp_is_refused(name: str, body: bytes) -> None:
    with pytest.raises(UndecodableImage):
        inspect_image(body, FORMATS["webp"], 40_000_000)


def test_ordinary_webps_pass() -> None:
    for name, body in webp_ok().items():
        check_webp_structure(body)
        assert inspect_image(body, FORMATS["webp"], 40_000_000)[0] > 0, name
    with pytest.raises(UndecodableImage, match="more than 1 metadata"):
        check_webp_structure(webp_ok()["exif-icc"], limits(image_max_metadata_segments=1))
