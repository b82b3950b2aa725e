"""The measured skin analysis's params and result models: what a request may ask, and the
bounds a result keeps (the contract of `skin-measure`'s JSON)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.analyzers.skin_measure.models import Metric, SkinMeasureParams, SkinMeasureResult, ToneMetric


def test_params_default_and_bounds() -> None:
    assert SkinMeasureParams() == SkinMeasureParams(spot_min_delta_l=5.0, overlay=True)
    assert (
        SkinMeasureParams.model_validate({"spot_min_delta_l": 30, "overlay": False}).spot_min_delta_l == 30.0
    )
    for bad in ({"spot_min_delta_l": 0.5}, {"spot_min_delta_l": 31}, {"min_face_px": 10}):
        with pytest.raises(ValidationError):
            SkinMeasureParams.model_validate(bad)  # out of range, or a gate setting asked per request


def test_scores_and_swatches_stay_in_their_ranges() -> None:
    assert Metric(value=1.5, unit="ΔL*", score=100).score == 100
    with pytest.raises(ValidationError):
        Metric(value=1.5, unit="ΔL*", score=101)
    tone = {"value": 30.0, "unit": "ITA°", "score": 66, "category": "intermediate", "monk_delta_e": 2.0}
    assert ToneMetric(**tone, monk=10, lab=[60.0, 10.0, 18.0]).monk == 10
    with pytest.raises(ValidationError):
        ToneMetric(**tone, monk=11, lab=[60.0, 10.0, 18.0])
    with pytest.raises(ValidationError):
        ToneMetric(**tone, monk=3, lab=[60.0, 10.0])


def test_a_result_keeps_the_seed_shaped_summary_bounds() -> None:
    fields = SkinMeasureResult.model_fields
    schema = SkinMeasureResult.model_json_schema()
    assert schema["properties"]["confidence"]["minimum"] == 0.70
    assert schema["properties"]["confidence"]["maximum"] == 0.99
    assert schema["properties"]["issues"]["maxItems"] == 3
    assert set(fields) >= {
        "skin_type",
        "issues",
        "confidence",
        "metrics",
        "regions",
        "face_box",
        "quality",
        "svg",
    }
