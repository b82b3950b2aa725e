"""app.core.ids: canonical UUID4 image ids (edge cases beyond tests/core/test_core.py)."""

from __future__ import annotations

import re
import uuid

import pytest

from app.core.ids import UUID4_PATTERN, is_uuid4, new_image_id, normalize_uuid4


def test_new_ids_are_canonical_version_4_rfc_4122_and_distinct() -> None:
    ids = [new_image_id() for _ in range(2000)]
    assert len(set(ids)) == 2000
    for value in ids:
        parsed = uuid.UUID(value)
        assert str(parsed) == value  # canonical: lower case, 8-4-4-4-12
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert is_uuid4(value)


@pytest.mark.parametrize(
    "value",
    [
        "12345678-1234-4234-8234-123456789abc",  # variant 8
        "12345678-1234-4234-B234-123456789ABC",  # variant B, upper case
        "12345678-1234-4234-c234-123456789abc",  # variant c is not RFC 4122
        "12345678-1234-5234-8234-123456789abc",  # version 5
        "12345678-1234-4234-8234-123456789abc\n",  # a trailing newline
        " 12345678-1234-4234-8234-123456789abc",
        "{12345678-1234-4234-8234-123456789abc}",
        "12345678123442348234123456789abc",
        "1234567g-1234-4234-8234-123456789abc",
    ],
)
def test_the_openapi_pattern_and_the_check_agree(value: str) -> None:
    assert (re.fullmatch(UUID4_PATTERN.strip("^$"), value) is not None) == is_uuid4(value)


def test_only_variant_8_to_b_and_version_4_pass() -> None:
    assert is_uuid4("12345678-1234-4234-8234-123456789abc")
    assert is_uuid4("12345678-1234-4234-B234-123456789ABC")
    assert not is_uuid4("12345678-1234-4234-c234-123456789abc")
    assert not is_uuid4("12345678-1234-5234-8234-123456789abc")
    assert not is_uuid4("12345678-1234-4234-8234-123456789abc\n")


def test_normalize_refuses_non_strings() -> None:
    with pytest.raises(ValueError, match="UUID version 4"):
        normalize_uuid4(uuid.uuid4())  # type: ignore[arg-type]
    assert normalize_uuid4("12345678-1234-4234-B234-123456789ABC") == "12345678-1234-4234-b234-123456789abc"
