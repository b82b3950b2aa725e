"""Seed 004's label maps as outlines: one closed (compound) path per label, holes included."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image, ImageDraw

from app.analyzers.face.segmentation import segmentation_contours, trace_boundaries
from app.analyzers.svg import SVG_NAMESPACE

NS = {"svg": SVG_NAMESPACE}
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _bbox(d: str) -> tuple[float, float, float, float]:
    pts = np.array([float(v) for v in NUMBER.findall(d)]).reshape(-1, 2)
    return (*pts.min(axis=0), *pts.max(axis=0))


def _mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def test_segmentation_gives_one_closed_path_per_label() -> None:
    label = Image.new("L", (200, 150), 0)
    draw = ImageDraw.Draw(label)
    draw.rectangle((20, 30, 89, 69), fill=1)
    draw.ellipse((100, 40, 179, 129), fill=2)
    result = segmentation_contours(label)
    assert list(result.regions) == ["label_1", "label_2"]
    assert (result.size.width, result.size.height) == (200, 150)
    labels = np.asarray(label)
    for value in (1, 2):
        d = result.regions[f"label_{value}"]
        assert d.startswith("M") and d.endswith(" Z") and d.count("M") == 1
        assert _bbox(d) == _mask_bbox(labels == value)
    assert result.regions["label_1"] == "M20,30 L90,30 L90,70 L20,70 Z"
    paths = ET.fromstring(result.svg).findall("svg:path", NS)
    assert [p.get("id") for p in paths] == ["label_1", "label_2"]


def test_segmentation_names_holes_and_modes() -> None:
    ring = np.zeros((40, 40), dtype=np.uint8)
    ring[5:35, 5:35] = 3
    ring[15:25, 15:25] = 0
    palette = Image.fromarray(ring, mode="L").convert("P")
    result = segmentation_contours(palette, {3: "skin"})
    assert list(result.regions) == ["skin"]
    assert result.regions["skin"] == "M5,5 L35,5 L35,35 L5,35 Z M15,15 L15,25 L25,25 L25,15 Z"
    with pytest.raises(ValueError):
        segmentation_contours(Image.new("RGB", (4, 4)))
    assert segmentation_contours(Image.new("L", (4, 4))).regions == {}


def test_trace_boundaries_separates_diagonal_neighbours() -> None:
    mask = np.zeros((4, 4), dtype=bool)
    mask[0, 0] = mask[1, 1] = True
    loops = trace_boundaries(mask)
    assert loops == [[(0, 0), (1, 0), (1, 1), (0, 1)], [(1, 1), (2, 1), (2, 2), (1, 2)]]
    assert trace_boundaries(np.zeros((3, 3), dtype=bool)) == []
    full = trace_boundaries(np.ones((2, 3), dtype=bool))
    assert full == [[(0, 0), (3, 0), (3, 2), (0, 2)]]
