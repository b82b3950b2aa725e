"""Colour science of the measured skin analysis, on known CIELAB values (D65, 2°)."""

from __future__ import annotations

import numpy as np
import pytest

from app.analyzers.skin_measure.color import (
    MONK_LAB,
    erythema_index,
    ita,
    ita_category,
    linear_rgb,
    nearest_monk,
    srgb_to_lab,
    white_balance,
)

# sRGB -> CIELAB reference values (the sRGB standard's matrix, D65; e.g. Bruce Lindbloom's calculator)
KNOWN_LAB = [
    ((255, 255, 255), (100.0, 0.0, 0.0)),
    ((0, 0, 0), (0.0, 0.0, 0.0)),
    ((255, 0, 0), (53.24, 80.09, 67.20)),
    ((0, 255, 0), (87.73, -86.18, 83.18)),
    ((0, 0, 255), (32.30, 79.19, -107.86)),
    ((119, 119, 119), (50.03, 0.0, 0.0)),
]


@pytest.mark.parametrize(("rgb", "lab"), KNOWN_LAB)
def test_srgb_to_lab_gives_the_known_values(
    rgb: tuple[int, int, int], lab: tuple[float, float, float]
) -> None:
    found = srgb_to_lab(np.array([rgb], dtype=np.uint8))[0]
    assert found == pytest.approx(lab, abs=0.02)


def test_the_lookup_table_and_the_formula_agree() -> None:
    values = np.arange(256, dtype=np.uint8).reshape(-1, 1).repeat(3, axis=1)
    assert np.allclose(linear_rgb(values), linear_rgb(values.astype(np.float64)), atol=1e-12)
    assert linear_rgb(np.array([0, 255], dtype=np.uint8)).tolist() == [0.0, 1.0]
    assert srgb_to_lab(np.zeros((4, 5, 3), dtype=np.uint8)).shape == (4, 5, 3)


def test_ita_is_the_angle_of_lightness_over_b() -> None:
    assert ita(50.0, 20.0) == pytest.approx(0.0)
    assert ita(60.0, 10.0) == pytest.approx(45.0)
    assert ita(40.0, 10.0) == pytest.approx(-45.0)
    assert ita(70.0, 0.0) == pytest.approx(90.0)


@pytest.mark.parametrize(
    ("angle", "category"),
    [
        (55.1, "very light"),
        (55.0, "light"),
        (41.0, "intermediate"),
        (28.0, "tan"),
        (10.0, "brown"),
        (-29.9, "brown"),
        (-30.0, "dark"),
        (-80.0, "dark"),
    ],
)
def test_ita_categories_have_strict_lower_bounds(angle: float, category: str) -> None:
    assert ita_category(angle) == category


def test_each_monk_swatch_is_its_own_nearest() -> None:
    for i, lab in enumerate(MONK_LAB, start=1):
        assert nearest_monk(lab) == (i, 0.0)
    swatch, delta = nearest_monk(MONK_LAB[4] + np.array([0.0, 3.0, 4.0]))
    assert swatch == 5 and delta == pytest.approx(5.0)


def test_erythema_index_is_zero_for_grey_and_grows_with_red() -> None:
    assert erythema_index(np.array([[128, 128, 128]], dtype=np.uint8))[0] == pytest.approx(0.0)
    red = erythema_index(np.array([[200, 100, 100], [220, 100, 100]], dtype=np.uint8))
    lin = linear_rgb(np.array([200, 100, 220], dtype=np.uint8))
    assert red[0] == pytest.approx(100 * np.log10(lin[0] / lin[1]))
    assert 0 < red[0] < red[1]


def _lab_image(lab: tuple[float, float, float], n: int = 100) -> np.ndarray:
    return np.tile(np.array(lab, dtype=np.float64), (n, 1)).reshape(10, n // 10, 3)


def test_white_balance_reads_the_neutral_pixels() -> None:
    assert white_balance(_lab_image((60.0, 0.0, 0.0)), 3.0) == ("ok", 0.0, 0.0)
    assert white_balance(_lab_image((60.0, 3.0, 4.0)), 3.0) == ("cast", 3.0, 4.0)
    assert white_balance(_lab_image((60.0, 3.0, 4.0)), 5.0) == ("ok", 3.0, 4.0)
    # saturated colours only, or neutral pixels too dark or too bright: nothing to judge by
    assert white_balance(_lab_image((60.0, 40.0, 30.0)), 3.0) == ("unknown", None, None)
    assert white_balance(_lab_image((20.0, 0.0, 0.0)), 3.0) == ("unknown", None, None)
    assert white_balance(_lab_image((97.0, 0.0, 0.0)), 3.0) == ("unknown", None, None)
