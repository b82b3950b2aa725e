"""app.core.ids: canonical UUID4 image ids (edge cases beyond tests/core/test_core.py) and the
random bytes they are made of."""

from __future__ import annotations

import re
import threading
import uuid

import pytest

from app.core.ids import UUID4_PATTERN, is_uuid4, new_image_id, normalize_uuid4, random_bytes
from tests.processes import in_fork


def test_new_ids_are_canonical_version_4_rfc_4122_and_distinct() -> None:
    ids = [new_image_id() for _ in range(2000)]
    assert len(set(ids)) == 2000
    for value in ids:
        parsed = uuid.UUID(value)
        assert str(parsed) == value  # canonical: lower case, 8-4-4-4-12
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert is_uuid4(value)


def test_random_bytes_never_repeat_across_refills_of_the_buffer() -> None:
    drawn = [random_bytes(16) for _ in range(1000)]  # several 4 KiB refills
    assert all(len(value) == 16 for value in drawn)
    assert len(set(drawn)) == 1000
    assert len(random_bytes(10_000)) == 10_000  # more than a buffer holds at once


def test_threads_draw_different_bytes() -> None:
    drawn: list[bytes] = []

    def draw() -> None:
        drawn.extend(random_bytes(16) for _ in range(300))

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(drawn)) == 1200


def test_a_forked_child_does_not_repeat_its_parents_next_ids() -> None:
    new_image_id()  # the parent's buffer holds the bytes of its next ids
    _, child_ids = in_fork(lambda: "".join(new_image_id() for _ in range(3)).encode())
    parent_ids = "".join(new_image_id() for _ in range(3))
    assert len(child_ids) == len(parent_ids) == 108
    assert child_ids.decode() != parent_ids


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
