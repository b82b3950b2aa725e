"""SVG helpers: closed path strings and the document builder."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from app.analyzers.svg import SVG_NAMESPACE, closed_path, compound_path, fmt_number, svg_document

NS = {"svg": SVG_NAMESPACE}


def test_fmt_number_rounds_and_trims() -> None:
    assert fmt_number(1.0) == "1"
    assert fmt_number(12.5) == "12.5"
    assert fmt_number(1.23456) == "1.23"
    assert fmt_number(-0.001) == "0"
    assert fmt_number(-3.14159) == "-3.14"
    assert fmt_number(0) == "0"
    assert fmt_number(100) == "100"


def test_closed_path_polygon() -> None:
    assert closed_path([(0, 0), (10, 0), (10, 5.5)]) == "M0,0 L10,0 L10,5.5 Z"


def test_closed_path_drops_duplicates_and_repeated_start() -> None:
    d = closed_path([(0, 0), (0.001, 0), (10, 0), (10, 10), (0, 0)])
    assert d == "M0,0 L10,0 L10,10 Z"


def test_closed_path_empty_and_degenerate() -> None:
    assert closed_path([]) == ""
    assert closed_path([(1, 2)]) == "M1,2 Z"


def test_closed_path_smooth_passes_through_every_point() -> None:
    points = [(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)]
    d = closed_path(points, smooth=True)
    assert d.startswith("M0,0 C") and d.endswith(" Z")
    segments = d[:-2].split("C")[1:]
    assert len(segments) == 4
    ends = [seg.split()[-1] for seg in segments]
    assert ends == ["10,0", "10,10", "0,10", "0,0"]


def test_compound_path_joins_subpaths() -> None:
    d = compound_path([[(0, 0), (4, 0), (4, 4)], [], [(1, 1), (2, 1), (2, 2)]])
    assert d == "M0,0 L4,0 L4,4 Z M1,1 L2,1 L2,2 Z"


def test_document_parses_with_one_path_per_region_in_order() -> None:
    regions = {"b_region": "M0,0 L1,0 L1,1 Z", "a_region": "M2,2 L3,2 L3,3 Z"}
    doc = svg_document(120, 80.5, regions, fill="#ff0000", stroke="none")
    root = ET.fromstring(doc)
    assert root.tag == f"{{{SVG_NAMESPACE}}}svg"
    assert root.get("width") == "120" and root.get("height") == "80.5"
    assert root.get("viewBox") == "0 0 120 80.5"
    paths = root.findall("svg:path", NS)
    assert [p.get("id") for p in paths] == ["b_region", "a_region"]
    assert [p.get("class") for p in paths] == ["b_region", "a_region"]
    assert all(p.get("fill") == "#ff0000" and p.get("stroke") == "none" for p in paths)
    assert paths[0].get("d") == regions["b_region"]


def test_document_escapes_names_and_attributes() -> None:
    name = 'a&b"<c>'
    doc = svg_document(10, 10, {name: "M0,0 L1,1 Z"}, region_attrs={name: {"data-note": "x'y&z"}})
    path = ET.fromstring(doc).find("svg:path", NS)
    assert path is not None
    assert path.get("id") == name
    assert path.get("data-note") == "x'y&z"


def test_document_is_deterministic_and_custom_view_box() -> None:
    regions = {"r": "M0,0 L1,0 L1,1 Z"}
    first = svg_document(10, 20, regions, view_box=(0, 0, 5, 10))
    assert first == svg_document(10, 20, regions, view_box=(0, 0, 5, 10))
    assert re.search(r'viewBox="0 0 5 10"', first)
