"""app.storage.metadata: the image metadata record (derived fields, byte-stable JSON, ETag)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from app.core.formats import FORMATS
from app.storage.metadata import ImageMetadata, utc_timestamp

MOMENT = datetime(2026, 11, 23, 17, 0, 0, tzinfo=UTC).timestamp()
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def record(**overrides: object) -> ImageMetadata:
    values: dict[str, object] = {
        "image_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
        "filename": "face.png",
        "fmt": FORMATS["png"],
        "size_bytes": 1_520_435,
        "width": 1920,
        "height": 1080,
        "sha256": SHA,
        "created_at": MOMENT + 0.5,
    }
    values.update(overrides)
    return ImageMetadata.describe(**values)  # type: ignore[arg-type]


def test_utc_timestamps_have_microseconds_and_a_z() -> None:
    assert utc_timestamp(0) == "1970-01-01T00:00:00.000000Z"
    assert utc_timestamp(MOMENT + 0.25) == "2026-11-23T17:00:00.250000Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", utc_timestamp())


def test_describe_derives_type_format_and_size_from_the_format() -> None:
    meta = record()
    assert (meta.content_type, meta.format, meta.size) == ("image/png", "png", "1.45 MB")
    assert meta.created_at == "2026-11-23T17:00:00.500000Z"
    assert meta.image_format is FORMATS["png"]
    assert meta.etag == f'"{SHA}"'


def test_the_json_is_compact_ordered_and_round_trips() -> None:
    meta = record(filename=None)
    raw = meta.to_json()
    assert list(json.loads(raw)) == [
        "image_id",
        "filename",
        "content_type",
        "format",
        "size_bytes",
        "size",
        "width",
        "height",
        "sha256",
        "created_at",
        "upright_width",
        "upright_height",
        "trailer",
        "perceptual_hash",
    ]
    assert b": " not in raw and b", " not in raw
    assert ImageMetadata.model_validate_json(raw) == meta
    assert ImageMetadata.model_validate_json(raw).to_json() == raw


def test_records_are_immutable_and_unknown_formats_are_a_key_error() -> None:
    meta = record()
    with pytest.raises(ValidationError):
        meta.width = 1  # type: ignore[misc]
    stranger = meta.model_copy(update={"format": "bmp"})
    with pytest.raises(KeyError):
        _ = stranger.image_format
