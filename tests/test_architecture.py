"""The layering of DESIGN.md, checked: imports point downward only; modules stay small."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from app.core import config

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


# Services, analyzers, storage and the HTTP layer see their own settings section (a frozen
# dataclass of the fields they use), never the whole `Settings` nor one of its pydantic parts:
# the sections are cut in `*settings.py` builders, called by the composition root.
SECTIONED_LAYERS = ("services", "analyzers", "storage", "api")


def _sectioned_modules() -> list[Path]:
    return [
        path
        for path in _modules()
        if path.relative_to(APP).parts[0] in SECTIONED_LAYERS and not path.name.endswith("settings.py")
    ]


def _whole_settings_imports(path: Path) -> list[str]:
    """The names `path` imports that are the settings object (or a pydantic part of it)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name == "app.core.config"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("app"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                value = getattr(module, alias.name, None)
                if value is config or alias.name == "get_settings":
                    found.append(f"{node.module}.{alias.name}")
                elif isinstance(value, type) and issubclass(value, BaseSettings):
                    found.append(f"{node.module}.{alias.name}")
    return found


@pytest.mark.parametrize("path", _sectioned_modules(), ids=lambda p: str(p.relative_to(APP)))
def test_services_see_their_settings_section_never_the_whole_settings(path: Path) -> None:
    assert _whole_settings_imports(path) == []


def test_the_settings_check_sees_a_whole_settings_import(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text(
        "from app.core.config import Settings\nfrom app.core import config\n"
        "from app.core.model_settings import ModelSettings, DEFAULT_MODEL\nimport app.core.config\n"
    )
    assert _whole_settings_imports(module) == [
        "app.core.config.Settings",
        "app.core.config",
        "app.core.model_settings.ModelSettings",
        "app.core.config",
    ]
