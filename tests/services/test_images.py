"""ImageService: reads, deletes, and repairs of metadata that a crash or an editor broke."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.errors import ImageNotFound
from tests.factories import CountingSkin, jpeg_bytes
from tests.services.conftest import publish, running


async def test_delete_removes_image_metadata_and_analyses(settings, data_dir: Path) -> None:
    async with running(settings, CountingSkin()) as services:
        image_id = (await publish(services, jpeg_bytes())).image_id
        await services.analysis.analyze(image_id)
        await services.images.delete(image_id)
        with pytest.raises(ImageNotFound):
            await services.images.get(image_id)
        with pytest.raises(ImageNotFound):
            await services.images.delete(image_id)
    assert not any((data_dir / "images").iterdir()) and not any((data_dir / "analysis").iterdir())


@pytest.mark.parametrize("damage", [b"", b"{", b'{"image_id": "someone-else"}'])
async def test_unreadable_metadata_is_rebuilt_from_the_bytes(settings, data_dir: Path, damage: bytes) -> None:
    data = jpeg_bytes((33, 22))
    async with running(settings, CountingSkin()) as services:
        meta = (await publish(services, data, "kept.jpg")).metadata
        (data_dir / "images" / f"{meta.image_id}.json").write_bytes(damage)
        rebuilt = await services.images.metadata(meta.image_id)
    assert (rebuilt.width, rebuilt.height, rebuilt.sha256, rebuilt.size_bytes) == (
        33,
        22,
        meta.sha256,
        len(data),
    )
    assert rebuilt.filename is None  # the client's name is lost with the metadata
    assert (data_dir / "images" / f"{meta.image_id}.json").read_bytes() == rebuilt.to_json()


async def test_start_up_publishes_images_whose_metadata_a_crash_cut_off(settings, data_dir: Path) -> None:
    async with running(settings, CountingSkin()) as services:
        image_id = (await publish(services, jpeg_bytes())).image_id
    (data_dir / "images" / f"{image_id}.json").unlink()
    async with running(settings, CountingSkin()) as services:
        assert (await services.images.metadata(image_id)).image_id == image_id


async def test_bytes_that_are_not_an_image_stay_unpublished(settings, data_dir: Path) -> None:
    async with running(settings, CountingSkin()) as services:
        image_id = (await publish(services, jpeg_bytes())).image_id
    (data_dir / "images" / f"{image_id}.json").unlink()
    (data_dir / "images" / f"{image_id}.jpg").write_bytes(b"garbage")
    async with running(settings, CountingSkin()) as services:
        with pytest.raises(ImageNotFound):
            await services.images.get(image_id)
