"""The skin measurements on synthetic frames whose statistics are known: a uniform skin colour,
then one change at a time (a known colour, a bright patch of known area, dark spots, darker
under-eyes, noise)."""

from __future__ import annotations

import numpy as np
import pytest

from app.analyzers.skin_measure.color import ita, ita_category, nearest_monk, srgb_to_lab
from app.analyzers.skin_measure.frame import SIZE, Frame
from app.analyzers.skin_measure.metrics import (
    dark_circles,
    prepare,
    redness,
    region_stats,
    shine,
    spots,
    texture,
    tone,
)

SKIN = (200, 150, 120)
# (rows, columns) of each region in the canonical frame, roughly where a face has them
BOXES = {
    "forehead": ((20, 60), (60, 164)),
    "nose_bridge": ((70, 130), (100, 124)),
    "right_under_eye": ((90, 100), (40, 90)),
    "left_under_eye": ((90, 100), (134, 184)),
    "right_cheek": ((105, 165), (30, 90)),
    "left_cheek": ((105, 165), (134, 194)),
    "chin": ((180, 210), (80, 144)),
}


def _regions() -> dict[str, np.ndarray]:
    masks = {}
    for name, ((r0, r1), (c0, c1)) in BOXES.items():
        mask = np.zeros((SIZE, SIZE), dtype=bool)
        mask[r0:r1, c0:c1] = True
        masks[name] = mask
    return masks


def _frame(rgb: np.ndarray) -> Frame:
    return Frame(rgb, centre=np.zeros(2), angle=0.0, scale=1.0)


def _uniform(color: tuple[int, int, int] = SKIN) -> np.ndarray:
    return np.tile(np.array(color, dtype=np.uint8), (SIZE, SIZE, 1))


def _lab(color: tuple[int, int, int]) -> np.ndarray:
    return srgb_to_lab(np.array([color], dtype=np.uint8))[0]


def test_a_uniform_skin_gives_its_colour_and_no_texture_shine_spots_or_circles() -> None:
    skin = prepare(_frame(_uniform()), _regions())
    lab = _lab(SKIN)
    stats = region_stats(skin)
    assert stats["forehead"].pixels == 40 * 104 and stats["forehead"].lab == pytest.approx(lab, abs=0.01)
    measured = tone(skin)
    angle = ita(float(lab[0]), float(lab[2]))
    assert measured.value == pytest.approx(angle, abs=0.01)
    assert measured.category == ita_category(angle) and measured.monk == nearest_monk(lab)[0]
    assert measured.score == round((angle + 90) / 1.8)
    assert redness(skin).value == pytest.approx(lab[1], abs=0.01)
    assert texture(skin).value == 0.0 and texture(skin).score == 0
    assert shine(skin).value == 0.0 and spots(skin, 5.0).value == 0
    assert dark_circles(skin).value == 0.0


def test_redder_cheeks_raise_redness_alone() -> None:
    rgb = _uniform()
    red = (215, 140, 120)
    for name in ("right_cheek", "left_cheek"):
        (r0, r1), (c0, c1) = BOXES[name]
        rgb[r0:r1, c0:c1] = red
    skin = prepare(_frame(rgb), _regions())
    result = redness(skin)
    assert result.value == pytest.approx(_lab(red)[1], abs=0.01)
    assert result.value > _lab(SKIN)[1] + 5
    assert result.regions["forehead"].a == pytest.approx(_lab(SKIN)[1], abs=0.01)
    assert result.regions["right_cheek"].erythema_index > result.regions["forehead"].erythema_index


def test_shine_is_the_share_of_bright_desaturated_pixels_in_the_t_zone() -> None:
    rgb = _uniform()
    rgb[30:40, 100:120] = (250, 250, 250)  # 200 specular pixels on the forehead
    skin = prepare(_frame(rgb), _regions())
    t_zone = sum(int(_regions()[name].sum()) for name in ("forehead", "nose_bridge", "chin"))
    assert shine(skin).value == pytest.approx(round(100 * 200 / t_zone, 2))
    assert shine(skin).cheeks == 0.0
    assert region_stats(skin)["forehead"].pixels == 40 * 104 - 200  # highlights are not skin


def test_each_dark_spot_is_counted_once() -> None:
    rgb = _uniform()
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    centres = [(130, 55), (140, 165), (40, 90)]
    for cy, cx in centres:
        rgb[(yy - cy) ** 2 + (xx - cx) ** 2 <= 9] = (150, 100, 80)
    measured = spots(prepare(_frame(rgb), _regions()), 5.0)
    assert measured.value == len(centres) and measured.area_percent > 0
    assert spots(prepare(_frame(rgb), _regions()), 40.0).value == 0  # none is 40 L* darker


def test_darker_under_eyes_give_their_lightness_difference() -> None:
    rgb = _uniform()
    darker = (180, 132, 105)
    for name in ("right_under_eye", "left_under_eye"):
        (r0, r1), (c0, c1) = BOXES[name]
        rgb[r0:r1, c0:c1] = darker
    measured = dark_circles(prepare(_frame(rgb), _regions()))
    expected = float(_lab(darker)[0] - _lab(SKIN)[0])
    assert expected < -5 and measured.value == pytest.approx(expected, abs=0.01)
    assert measured.score == min(100, round(-8 * expected))


def test_texture_grows_with_the_noise_on_the_cheeks() -> None:
    rng = np.random.default_rng(0)
    values = []
    for amplitude in (2, 6, 12):
        noise = rng.normal(0, amplitude, (SIZE, SIZE, 1))
        rgb = np.clip(_uniform().astype(float) + noise, 0, 255).astype(np.uint8)
        values.append(texture(prepare(_frame(rgb), _regions())).value)
    assert 0 < values[0] < values[1] < values[2]
