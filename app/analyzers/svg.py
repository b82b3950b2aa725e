"""Pure SVG helpers: closed path `d` strings from point lists and a small document builder.

Everything here is deterministic: the same points give byte-identical output. Coordinates
are rounded to 2 decimals and written without trailing zeros (``12.5``, ``3``, ``-0.25``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from xml.sax.saxutils import quoteattr

Point = tuple[float, float]

SVG_NAMESPACE = "http://www.w3.org/2000/svg"


def fmt_number(value: float) -> str:
    """`value` rounded to 2 decimals, without trailing zeros and never as ``-0``."""
    text = f"{round(float(value), 2):.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _fmt_point(point: Point) -> str:
    return f"{fmt_number(point[0])},{fmt_number(point[1])}"


def _dedupe(points: Iterable[Point]) -> list[Point]:
    """The points with consecutive duplicates (after rounding) and a repeated first point removed."""
    out: list[Point] = []
    last = ""
    for x, y in points:
        key = _fmt_point((x, y))
        if key != last:
            out.append((float(x), float(y)))
            last = key
    if len(out) > 1 and _fmt_point(out[0]) == _fmt_point(out[-1]):
        out.pop()
    return out


def closed_path(points: Sequence[Point], smooth: bool = False) -> str:
    """A closed SVG path `d` through `points`: ``M x,y L x,y ... Z``.

    With `smooth`, the polygon becomes a closed Catmull-Rom spline written as cubic
    Béziers (``C``) through every point. Fewer than 3 distinct points give a path that
    is still closed (a degenerate line or dot); no points give ``""``.
    """
    pts = _dedupe(points)
    if not pts:
        return ""
    if not smooth or len(pts) < 3:
        return "M" + " L".join(_fmt_point(p) for p in pts) + " Z"
    n = len(pts)
    parts = ["M" + _fmt_point(pts[0])]
    for i in range(n):
        p0, p1, p2, p3 = pts[(i - 1) % n], pts[i], pts[(i + 1) % n], pts[(i + 2) % n]
        c1 = (p1[0] + (p2[0] - p0[0]) / 6, p1[1] + (p2[1] - p0[1]) / 6)
        c2 = (p2[0] - (p3[0] - p1[0]) / 6, p2[1] - (p3[1] - p1[1]) / 6)
        parts.append(f"C{_fmt_point(c1)} {_fmt_point(c2)} {_fmt_point(p2)}")
    return " ".join(parts) + " Z"


def compound_path(loops: Iterable[Sequence[Point]], smooth: bool = False) -> str:
    """Several closed sub-paths in one `d` string (use ``fill-rule="evenodd"`` for holes)."""
    return " ".join(d for d in (closed_path(loop, smooth) for loop in loops) if d)


def svg_document(
    width: float,
    height: float,
    regions: Mapping[str, str],
    *,
    view_box: tuple[float, float, float, float] | None = None,
    fill: str = "none",
    stroke: str = "#000000",
    stroke_width: float = 1.0,
    fill_rule: str = "evenodd",
    region_attrs: Mapping[str, Mapping[str, str]] | None = None,
) -> str:
    """An SVG document with one ``<path>`` per region, in the mapping's order.

    Each path has ``id`` and ``class`` set to the region name, the given fill/stroke, and
    any per-region overrides from `region_attrs`. All attribute values are XML-escaped.
    The viewBox defaults to ``0 0 width height``.
    """
    vb = view_box if view_box is not None else (0.0, 0.0, width, height)
    lines = [
        f'<svg xmlns="{SVG_NAMESPACE}" width={quoteattr(fmt_number(width))} '
        f"height={quoteattr(fmt_number(height))} "
        f"viewBox={quoteattr(' '.join(fmt_number(v) for v in vb))}>"
    ]
    for name, d in regions.items():
        attrs: dict[str, str] = {
            "id": name,
            "class": name,
            "d": d,
            "fill": fill,
            "stroke": stroke,
            "stroke-width": fmt_number(stroke_width),
            "fill-rule": fill_rule,
        }
        if region_attrs and name in region_attrs:
            attrs.update(region_attrs[name])
        lines.append("  <path " + " ".join(f"{k}={quoteattr(v)}" for k, v in attrs.items()) + "/>")
    lines.append("</svg>")
    return "\n".join(lines) + "\n"
