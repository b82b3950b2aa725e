"""app.core.units: human-readable sizes (boundaries beyond tests/core/test_core.py)."""

from __future__ import annotations

import pytest

from app.core.units import human_size


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (1, "1 B"),
        (1536, "1.50 KB"),
        (1024**2 - 1, "1024.00 KB"),  # rounds up but stays in KB: the unit follows the value
        (1024**2, "1.00 MB"),
        (1024**3, "1.00 GB"),
        (1024**4, "1024.00 GB"),  # GB is the largest unit
        (3 * 1024**4, "3072.00 GB"),
    ],
)
def test_unit_boundaries(size: int, text: str) -> None:
    assert human_size(size) == text
