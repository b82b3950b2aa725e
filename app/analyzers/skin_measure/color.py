"""Colour science for the measured skin analysis: sRGB -> CIELAB, ITA°, Monk swatches, erythema.

- CIELAB (D65, 2°) from sRGB (IEC 61966-2-1): linearise, XYZ by the sRGB matrix, Lab by CIE 15.
  The camera's white balance is taken as it is: `white_balance` only *checks* it, from the
  image's near-neutral pixels (chroma < 12, 25 < L* < 95): their median a*, b* is the cast.
- ITA° (individual typology angle) = atan2(L* - 50, b*) in degrees; categories (Chardon et al.
  1991, extended by Del Bino et al. 2006): very light > 55 >= light > 41 >= intermediate > 28
  >= tan > 10 >= brown > -30 >= dark.
- Monk Skin Tone scale (Monk 2019, released by Google under CC BY 4.0): the 10 published sRGB
  swatches; the nearest by CIE76 ΔE*ab in Lab.
- Erythema index: 100 x log10(R / G) of linear RGB, the RGB analogue of Dawson et al.'s (1980)
  reflectance index (haemoglobin absorbs green far more than red); not calibrated to a meter.
"""

from __future__ import annotations

import math

import numpy as np

_M = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_WHITE = np.array([0.95047, 1.0, 1.08883])
_EPS = (6 / 29) ** 3

ITA_CATEGORIES: tuple[tuple[float, str], ...] = (
    (55.0, "very light"),
    (41.0, "light"),
    (28.0, "intermediate"),
    (10.0, "tan"),
    (-30.0, "brown"),
)
MONK_HEX: tuple[str, ...] = (
    "#f6ede4",
    "#f3e7db",
    "#f7ead0",
    "#eadaba",
    "#d7bd96",
    "#a07e56",
    "#825c43",
    "#604134",
    "#3a312a",
    "#292420",
)


def _linearize(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


_LINEAR_LUT = _linearize(np.arange(256, dtype=np.float64) / 255.0)


def linear_rgb(rgb: np.ndarray) -> np.ndarray:
    """sRGB values in [0, 255] (any shape ending in 3) to linear RGB in [0, 1], float64
    (8-bit values through a lookup table)."""
    arr = np.asarray(rgb)
    if arr.dtype == np.uint8:
        return _LINEAR_LUT[arr]
    return _linearize(arr.astype(np.float64) / 255.0)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 255] (..., 3) to CIELAB (..., 3): L* in [0, 100], a*, b*."""
    xyz = linear_rgb(rgb) @ (_M.T / _WHITE)
    f = np.cbrt(xyz)
    dark = xyz <= _EPS
    if dark.any():
        f[dark] = xyz[dark] / (3 * (6 / 29) ** 2) + 4 / 29
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def ita(lightness: float, b: float) -> float:
    """The individual typology angle, degrees."""
    return math.degrees(math.atan2(lightness - 50.0, b))


def ita_category(angle: float) -> str:
    """The ITA° skin colour category (Chardon 1991; Del Bino 2006)."""
    for threshold, name in ITA_CATEGORIES:
        if angle > threshold:
            return name
    return "dark"


def _hex_rgb(code: str) -> tuple[int, int, int]:
    return int(code[1:3], 16), int(code[3:5], 16), int(code[5:7], 16)


MONK_LAB = srgb_to_lab(np.array([_hex_rgb(h) for h in MONK_HEX], dtype=np.float64))


def nearest_monk(lab: np.ndarray) -> tuple[int, float]:
    """The nearest Monk swatch (1-10) to a Lab colour and its CIE76 ΔE*ab."""
    d = np.linalg.norm(MONK_LAB - np.asarray(lab, dtype=np.float64), axis=1)
    i = int(np.argmin(d))
    return i + 1, float(d[i])


def erythema_index(rgb: np.ndarray) -> np.ndarray:
    """Per-pixel erythema index 100 x log10(R / G) of linear RGB, for sRGB pixels (n, 3)."""
    lin = np.maximum(linear_rgb(rgb), 1e-4)
    return 100.0 * np.log10(lin[..., 0] / lin[..., 1])


def white_balance(lab: np.ndarray, max_cast: float) -> tuple[str, float | None, float | None]:
    """("ok" | "cast" | "unknown", median a*, median b*) of the near-neutral pixels of `lab`
    (..., 3); "unknown" when fewer than 2% of the pixels are near-neutral."""
    px = lab.reshape(-1, 3)
    chroma = np.hypot(px[:, 1], px[:, 2])
    neutral = px[(chroma < 12) & (px[:, 0] > 25) & (px[:, 0] < 95)]
    if len(neutral) < 0.02 * len(px) or len(neutral) == 0:
        return "unknown", None, None
    a, b = float(np.median(neutral[:, 1])), float(np.median(neutral[:, 2]))
    return ("ok" if math.hypot(a, b) <= max_cast else "cast"), a, b
