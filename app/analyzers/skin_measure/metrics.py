"""The skin measurements, on the canonical frame (`skin_frame`) and its region masks.

Skin pixels of a region are its mask (eyes, brows, lips and nostrils already removed) less
pixels whose colour is far from the face's median skin colour (|ΔL*| > 25 or a*b* distance >
20: hair, shadows, glasses, make-up edges) and less specular highlights. Specular pixels are
bright and desaturated against their own region: L* at least halfway from the region's median
to white (and >= median + 6), chroma <= 0.6 x the region's median chroma.

| metric | value | score (0-100, 100 = most pronounced) |
|---|---|---|
| tone | ITA° of the median L*, b* of cheeks, forehead and chin | (ITA° + 90) / 1.8 |
| redness | mean a* of the cheeks | 5 * (a* - 5) |
| shine | % specular pixels of the T-zone (forehead, nose bridge, chin) | 10 * % |
| texture | RMS of L* - Gaussian(L*, sigma 1.5 px) on the cheeks (eroded 2 px) | 40 * (rms - 0.5) |
| dark_circles | median L* under the eyes - median L* of the upper cheeks | -8 * ΔL* |
| spots | local minima of the dark blob map below -`min_delta_l` | 20 * area % |

The dark blob map is L* - Gaussian(L*, sigma 6 px) smoothed by a Gaussian of sigma 1 px: a
spot is darker than its ~1 cm surroundings by at least `min_delta_l` (default 5 ΔL*).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.analyzers.skin_measure.color import erythema_index, ita, ita_category, nearest_monk, srgb_to_lab
from app.analyzers.skin_measure.frame import Frame, erode, gaussian, local_min
from app.analyzers.skin_measure.models import (
    Metric,
    RednessMetric,
    RegionRedness,
    RegionStats,
    ShineMetric,
    SpotsMetric,
    ToneMetric,
)

CHEEKS = ("right_cheek", "left_cheek")
T_ZONE = ("forehead", "nose_bridge", "chin")
TONE_REGIONS = ("right_cheek", "left_cheek", "forehead", "chin")
UNDER_EYES = ("right_under_eye", "left_under_eye")


def _score(value: float, slope: float, offset: float = 0.0) -> int:
    return int(round(min(100.0, max(0.0, slope * (value - offset)))))


def _r(value: float, digits: int = 2) -> float:
    return round(float(value), digits) + 0.0


@dataclass(frozen=True)
class Skin:
    """The frame in Lab, region masks, skin masks (colour-checked, highlights out), highlights."""

    rgb: np.ndarray
    lab: np.ndarray
    regions: dict[str, np.ndarray]
    skin: dict[str, np.ndarray]
    specular: np.ndarray

    def union(self, names: tuple[str, ...], skin: bool = True) -> np.ndarray:
        """The union of some regions' skin (or region) masks."""
        masks = self.skin if skin else self.regions
        out = np.zeros(self.specular.shape, dtype=bool)
        for name in names:
            out |= masks[name]
        return out


def prepare(frame: Frame, regions: dict[str, np.ndarray]) -> Skin:
    """Lab, the reference skin colour and the skin and highlight masks of a frame."""
    lab = srgb_to_lab(frame.rgb)
    every = np.zeros(lab.shape[:2], dtype=bool)
    for mask in regions.values():
        every |= mask
    px = lab[every] if every.any() else lab.reshape(-1, 3)
    ref = np.median(px, axis=0)
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    specular = np.zeros(every.shape, dtype=bool)
    for mask in regions.values():  # highlights against the region's own median: edits stay local
        if mask.any():
            r_l, r_c = np.median(lab[..., 0][mask]), np.median(chroma[mask])
            specular |= mask & (lab[..., 0] >= r_l + max(6.0, (100 - r_l) / 2)) & (chroma <= 0.6 * r_c)
    close = (np.abs(lab[..., 0] - ref[0]) <= 25) & (
        np.hypot(lab[..., 1] - ref[1], lab[..., 2] - ref[2]) <= 20
    )
    skin = {name: mask & close & ~specular for name, mask in regions.items()}
    return Skin(frame.rgb, lab, regions, skin, specular)


def region_stats(skin: Skin) -> dict[str, RegionStats]:
    """Pixels and median Lab of each region's skin."""
    out = {}
    for name, mask in skin.skin.items():
        lab = [_r(v) for v in np.median(skin.lab[mask], axis=0)] if mask.any() else None
        out[name] = RegionStats(pixels=int(mask.sum()), lab=lab)
    return out


def _median_lab(skin: Skin, names: tuple[str, ...]) -> np.ndarray:
    mask = skin.union(names)
    return np.median(skin.lab[mask], axis=0) if mask.any() else np.median(skin.lab.reshape(-1, 3), axis=0)


def tone(skin: Skin) -> ToneMetric:
    """ITA°, its category and the nearest Monk swatch of the cheeks, forehead and chin."""
    lab = _median_lab(skin, TONE_REGIONS)
    angle = ita(float(lab[0]), float(lab[2]))
    monk, delta_e = nearest_monk(lab)
    return ToneMetric(
        value=_r(angle),
        unit="ITA°",
        score=_score(angle, 1 / 1.8, -90.0),
        category=ita_category(angle),
        monk=monk,
        monk_delta_e=_r(delta_e),
        lab=[_r(v) for v in lab],
    )


def redness(skin: Skin) -> RednessMetric:
    """Mean a* of the cheeks; a* and the erythema index of every region."""
    regions = {}
    for name, mask in skin.skin.items():
        if mask.any():
            a = float(skin.lab[..., 1][mask].mean())
            ei = float(erythema_index(skin.rgb[mask]).mean())
            regions[name] = RegionRedness(a=_r(a), erythema_index=_r(ei))
    cheeks = skin.union(CHEEKS)
    value = float(skin.lab[..., 1][cheeks].mean()) if cheeks.any() else 0.0
    return RednessMetric(value=_r(value), unit="a*", score=_score(value, 5.0, 5.0), regions=regions)


def _specular_percent(skin: Skin, names: tuple[str, ...]) -> float:
    area = skin.union(names, skin=False)
    return 100.0 * float((skin.specular & area).sum()) / max(1, int(area.sum()))


def shine(skin: Skin) -> ShineMetric:
    """Specular highlight share of the T-zone, and of the cheeks."""
    t_zone = _specular_percent(skin, T_ZONE)
    return ShineMetric(
        value=_r(t_zone), unit="%", score=_score(t_zone, 10.0), cheeks=_r(_specular_percent(skin, CHEEKS))
    )


def texture(skin: Skin) -> Metric:
    """High-frequency energy of the cheeks: RMS of L* minus its Gaussian blur (sigma 1.5 px)."""
    lightness = skin.lab[..., 0]
    residual = lightness - gaussian(lightness, 1.5)
    mask = erode(skin.union(CHEEKS), 2)
    rms = float(np.sqrt(np.mean(residual[mask] ** 2))) if mask.any() else 0.0
    return Metric(value=_r(rms, 3), unit="ΔL* rms", score=_score(rms, 40.0, 0.5))


def dark_circles(skin: Skin) -> Metric:
    """Median L* under each eye minus that of the upper part of the cheek below it, averaged."""
    lightness = skin.lab[..., 0]
    deltas = []
    for under, cheek in zip(UNDER_EYES, CHEEKS, strict=True):
        u, c = skin.skin[under], skin.skin[cheek].copy()
        rows = np.nonzero(skin.regions[cheek].any(axis=1))[0]
        if rows.size:
            c[rows[0] + int(0.4 * (rows[-1] - rows[0] + 1)) :] = False  # the upper 40% of the cheek
        if u.any() and c.any():
            deltas.append(float(np.median(lightness[u]) - np.median(lightness[c])))
    delta = float(np.mean(deltas)) if deltas else 0.0
    return Metric(value=_r(delta), unit="ΔL*", score=_score(-delta, 8.0))


def spots(skin: Skin, min_delta_l: float) -> SpotsMetric:
    """Local dark blobs on the cheeks, forehead, chin and nose bridge."""
    lightness = skin.lab[..., 0]
    blobs = gaussian(lightness - gaussian(lightness, 6.0), 1.0)
    area = erode(skin.union(CHEEKS + T_ZONE), 1)
    dark = area & (blobs <= -min_delta_l)
    inside = np.where(area, blobs, np.inf)  # every dark blob has its minimum inside the area
    count = int((dark & (inside == local_min(inside, 3))).sum())
    percent = 100.0 * float(dark.sum()) / max(1, int(area.sum()))
    return SpotsMetric(value=count, unit="count", score=_score(percent, 20.0), area_percent=_r(percent))
