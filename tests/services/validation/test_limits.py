"""app.services.validation.limits: the metadata budget a structure walk keeps counts steps,
segments and bytes against its limits and names the format in its refusal."""

from __future__ import annotations

import dataclasses

import pytest

from app.core.errors import UndecodableImage
from app.services.validation.limits import MetadataBudget
from app.services.validation.settings import DEFAULT_LIMITS


def budget(**changes: int) -> MetadataBudget:
    return MetadataBudget(dataclasses.replace(DEFAULT_LIMITS, **changes), "WebP")


def test_steps_up_to_the_chunk_limit_pass() -> None:
    walk = budget(image_max_chunks=3)
    for _ in range(3):
        walk.step()
    with pytest.raises(UndecodableImage, match="The WebP has more than 3 segments"):
        walk.step()


def test_metadata_segments_and_bytes_are_counted() -> None:
    walk = budget(image_max_metadata_segments=2, image_max_metadata_bytes=100)
    walk.add(60)
    walk.add(40)
    assert (walk.segments, walk.bytes) == (2, 100)
    with pytest.raises(UndecodableImage, match="more than 2 metadata segments"):
        walk.add(0)
    walk = budget(image_max_metadata_bytes=100)
    walk.add(100)
    with pytest.raises(UndecodableImage, match="The WebP's metadata holds more than 100 bytes"):
        walk.add(1)
