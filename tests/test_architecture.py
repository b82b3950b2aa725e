"""The layering of DESIGN.md, checked: imports point downward only; modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[1] / "app"

# Layer -> what it must never import (HTTP stays in app.api; services never see routes).
FORBIDDEN = {
    "services": ("fastapi", "starlette", "app.api", "app.schemas", "app.main", "app.composition"),
    "analyzers": (
        "fastapi",
        "starlette",
        "app.api",
        "app.schemas",
        "app.main",
        "app.composition",
        "app.services",
    ),
    "storage": (
        "fastapi",
        "starlette",
        "app.api",
        "app.schemas",
        "app.main",
        "app.composition",
        "app.services",
        "app.analyzers",
    ),
    "db": ("fastapi", "starlette", "app.api", "app.schemas", "app.main", "app.composition", "app.services"),
    "core": (
        "fastapi",
        "starlette",
        "app.api",
        "app.schemas",
        "app.main",
        "app.composition",
        "app.services",
        "app.storage",
    ),
}
# Modules are split by concept, not by size: ~400 lines is a prompt to look at a module, and
# this bound only catches a god module (starlette's largest module has 876 lines).
MAX_LINES = 800


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _modules() -> list[Path]:
    return sorted(APP.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(APP)))
def test_imports_point_downward(path: Path) -> None:
    layer = path.relative_to(APP).parts[0]
    for name in _imports(path):
        for banned in FORBIDDEN.get(layer, ()):
            assert not (name == banned or name.startswith(banned + ".")), f"{path.name} imports {name}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(APP)))
def test_no_god_modules(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_LINES


ROUTES = sorted((APP / "api" / "routes").glob("*.py"))


@pytest.mark.parametrize("path", ROUTES, ids=lambda p: p.name)
def test_routes_take_typed_services_never_the_container(path: Path) -> None:
    """A route names the services it uses (`app.api.deps` aliases, or typed lean handler
    parameters): it never reaches the container, through an import, `Call.services` or app.state."""
    tree = ast.parse(path.read_text())
    assert not any(name == "app.composition" for name in _imports(path))
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert not attributes & {"services", "state"}  # Call.services, request.app.state
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    names |= {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names
    }
    assert not names & {"ServiceContainer", "container_of", "ContainerDep", "Settings"}
