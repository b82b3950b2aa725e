"""app.services.images.previews: previews of scikit-image photos -- upright, never enlarged, a
baseline JPEG rendered once and then read from the cache (a broken cache entry rendered again),
the width one of the settings; renditions at full size; the JPEG checks on cached bytes."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image
from skimage import data

from app.core.config import Settings
from app.core.errors import ValidationFailed
from app.services.accounts.principals import Principal
from app.services.images.previews import (
    PreviewService,
    is_whole_jpeg,
    is_whole_jpeg_file,
    preview_name,
    render_preview,
    render_rendition,
)
from tests.factories import encode
from tests.logins import client_from, running

ANONYMOUS = Principal(id="anonymous", kind="anonymous")


def size_of(body: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(body)) as im:
        assert im.format == "JPEG"
        return im.size


def test_renders_are_upright_and_never_enlarged(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise
    path = tmp_path / "chelsea.jpg"
    path.write_bytes(encode(Image.fromarray(data.chelsea()), "JPEG", exif=exif.tobytes()))  # 451 x 300
    assert size_of(render_preview(path, 200, 80)) == (200, 301)
    assert size_of(render_preview(path, 1024, 80)) == (300, 451)
    rendition = render_rendition(path, 90)
    assert size_of(rendition) == (300, 451)
    out = tmp_path / "rendition.jpg"
    out.write_bytes(rendition)
    assert is_whole_jpeg_file(out)
    out.write_bytes(rendition[:-10])
    assert not is_whole_jpeg_file(out) and not is_whole_jpeg_file(tmp_path / "missing.jpg")
    assert is_whole_jpeg(rendition) and not is_whole_jpeg(rendition[:-1]) and not is_whole_jpeg(None)


async def test_a_preview_is_rendered_once_then_cached(
    make_settings: Callable[..., Settings], data_dir: Path
) -> None:
    async with running(make_settings()) as app, client_from(app, "10.0.0.1") as api:
        body = encode(Image.fromarray(data.astronaut()), "PNG")
        resp = await api.post("/api/v1/upload", files={"file": ("a.png", body, "image/png")})
        assert resp.status_code == 201, resp.text
        image_id = resp.json()["image_id"]
        services = app.state.services
        previews: PreviewService = services.previews
        image = await services.images.get(image_id, ANONYMOUS)
        width = min(previews.widths)
        first = await previews.preview(image, width)
        assert not first.cached and size_of(first.body)[0] == min(width, 512)
        again = await previews.preview(image, width)
        assert again.cached and again.body == first.body and again.etag == first.etag
        cached = [
            p
            for p in data_dir.rglob("*")
            if p.name == preview_name(image_id, min(width, 512), previews.quality).split("/")[1]
        ]
        assert len(cached) == 1
        cached[0].write_bytes(b"not a jpeg")  # a broken entry is rendered again
        repaired = await previews.preview(image, width)
        assert not repaired.cached and is_whole_jpeg(repaired.body)
        with pytest.raises(ValidationFailed):
            await previews.preview(image, width + 1)
