"""The deterministic skin analyzer: same id, same result, always in range."""

from __future__ import annotations

import subprocess
import sys
import uuid

from hypothesis import given
from hypothesis import strategies as st

from app.analyzers.skin import SKIN_ISSUES, SKIN_TYPES, skin_analysis


@given(st.uuids(version=4))
def test_deterministic_and_in_range(value: uuid.UUID) -> None:
    image_id = str(value)
    result = skin_analysis(image_id)
    assert result == skin_analysis(image_id)
    assert result.skin_type in SKIN_TYPES
    assert len(result.issues) <= 3
    assert len(set(result.issues)) == len(result.issues)
    assert set(result.issues) <= set(SKIN_ISSUES)
    assert 0.70 <= result.confidence <= 0.99
    assert round(result.confidence, 2) == result.confidence


def test_same_result_in_another_process() -> None:
    image_id = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
    code = (
        f"from app.analyzers.skin import skin_analysis; print(skin_analysis({image_id!r}).model_dump_json())"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    ).stdout.strip()
    assert other == skin_analysis(image_id).model_dump_json()


def test_results_vary_across_ids() -> None:
    results = {skin_analysis(str(uuid.UUID(int=i, version=4))).model_dump_json() for i in range(200)}
    assert len(results) > 100
    types = {skin_analysis(str(uuid.UUID(int=i, version=4))).skin_type for i in range(200)}
    assert types == set(SKIN_TYPES)
