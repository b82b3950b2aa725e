"""Contours of a segmentation label image: one closed (compound) SVG path per label.

Seed 004 accepts a label image instead of detecting a face; each non-zero label value
becomes one region, traced along pixel boundaries (numpy only, 4-connectivity).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field

from app.analyzers.svg import Point, compound_path, svg_document

LABEL_MODES = ("L", "P", "I", "I;16", "I;16L", "I;16B", "1")


class Size(BaseModel):
    """A width and height in pixels."""

    width: int
    height: int


class SegmentationResult(BaseModel):
    """Contours of a segmentation label image: one closed path per non-zero label."""

    size: Size
    regions: dict[str, str] = Field(description="Region name -> closed SVG path d, label image coordinates")
    svg: str


_DIRS = np.array([(1, 0), (0, 1), (-1, 0), (0, -1)])  # E, S, W, N with y down


def trace_boundaries(mask: np.ndarray) -> list[list[Point]]:
    """Closed pixel-boundary polygons of a boolean mask, vertices on pixel corners.

    Outer boundaries run clockwise on screen, holes counter-clockwise (so either fill rule
    renders holes); diagonal-only contacts separate regions (4-connectivity). Only corner
    vertices are kept. Deterministic: loops come in raster order of their first edge.
    """
    m = np.pad(np.asarray(mask, dtype=bool), 1)
    inner = m[1:-1, 1:-1]
    width = inner.shape[1] + 1  # vertex grid is (H+1) x (W+1)
    starts, dirs = [], []
    # Pixel (r, c) is the square [c, c+1] x [r, r+1]; the inside is on the right of each edge.
    for d, (neighbour, (ox, oy)) in enumerate(
        (
            (m[:-2, 1:-1], (0, 0)),  # top edge, heading E from the top-left corner
            (m[1:-1, 2:], (1, 0)),  # right edge, heading S from the top-right corner
            (m[2:, 1:-1], (1, 1)),  # bottom edge, heading W from the bottom-right corner
            (m[1:-1, :-2], (0, 1)),  # left edge, heading N from the bottom-left corner
        )
    ):
        rows, cols = np.nonzero(inner & ~neighbour)
        starts.append((rows + oy) * width + (cols + ox))
        dirs.append(np.full(rows.shape, d))
    start = np.concatenate(starts).astype(np.int64)
    direction = np.concatenate(dirs).astype(np.int64)
    if start.size == 0:
        return []
    order = np.lexsort((direction, start))  # raster order, then E, S, W, N
    start, direction = start[order], direction[order]
    key = start * 4 + direction
    step = _DIRS[direction]
    end = start + step[:, 1] * width + step[:, 0]
    # Next edge: at a saddle prefer the right turn (towards the inside), else the only one.
    nxt: np.ndarray = np.full(start.shape, -1, dtype=np.int64)  # numpy's stubs type it as 0-d
    for delta in (3, 0, 1):  # left turn, straight on, right turn: later ones win
        want = end * 4 + (direction + delta) % 4
        pos = np.minimum(np.searchsorted(key, want), key.size - 1)
        found = key[pos] == want
        nxt[found] = pos[found]
    prev = np.empty_like(nxt)
    prev[nxt] = np.arange(nxt.size)
    loops: list[list[Point]] = []
    used = [False] * start.size
    nxt_list, dir_list, start_list = nxt.tolist(), direction.tolist(), start.tolist()
    for first in range(start.size):
        if used[first]:
            continue
        loop: list[Point] = []
        e, prev_dir = first, dir_list[int(prev[first])]
        while not used[e]:
            used[e] = True
            if dir_list[e] != prev_dir:  # a corner
                v = start_list[e]
                loop.append((float(v % width), float(v // width)))
            prev_dir = dir_list[e]
            e = nxt_list[e]
        loops.append(loop)
    return loops


def segmentation_contours(
    label_image: Image.Image, label_names: Mapping[int, str] | None = None
) -> SegmentationResult:
    """One closed (possibly compound) path per non-zero label value of a label image.

    `label_image` holds one integer label per pixel: mode L, P (palette indices), I, I;16
    or 1; 0 is background and skipped. Regions are named by `label_names` or `label_<n>`,
    in ascending label order; coordinates are the label image's own pixels.
    """
    if label_image.mode not in LABEL_MODES:
        raise ValueError(f"A label image must have one integer channel, not mode {label_image.mode}")
    labels = np.asarray(label_image)
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    regions: dict[str, str] = {}
    for value in np.unique(labels).tolist():
        if value == 0:
            continue
        name = (label_names or {}).get(int(value), f"label_{int(value)}")
        regions[name] = compound_path(trace_boundaries(labels == value))
    w, h = label_image.size
    return SegmentationResult(size=Size(width=w, height=h), regions=regions, svg=svg_document(w, h, regions))
