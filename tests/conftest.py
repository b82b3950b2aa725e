"""Shared fixtures: each test gets its own app over its own tmp data dir."""

from __future__ import annotations

import inspect
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.analyzers.registry import AnalyzerRegistry, build_registry
from app.analyzers.settings import AnalyzerSettings
from app.core.config import Settings
from app.main import create_app
from tests.factories import TEST_RATE_LIMITS
from tests.processes import Server


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    # Every `async def` test runs on asyncio through anyio's pytest plugin.
    if name.startswith("test") and inspect.iscoroutinefunction(obj):
        pytest.mark.anyio(obj)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def make_settings(data_dir: Path) -> Callable[..., Settings]:
    """Settings for a test app; keyword overrides win (no `.env` is read)."""

    def _make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": data_dir,
            "environment": "test",
            "api_keys": [],
            "model_dir": MODEL_DIR,
            **TEST_RATE_LIMITS,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)

    return _make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


MODEL_DIR = Path(os.environ.get("MODEL_DIR", Path(__file__).resolve().parents[1] / "models"))


@cache
def shared_registry() -> AnalyzerRegistry:
    """The real analyzers, models loaded once per test session (`make test` builds the model)."""
    registry = build_registry(
        AnalyzerSettings.from_settings(Settings(_env_file=None, model_dir=MODEL_DIR, onnx_threads=1))
    )
    assert not registry.unavailable, f"analyzers failed to load: {registry.unavailable}"
    return registry


@asynccontextmanager
async def serve(
    settings: Settings, registry: AnalyzerRegistry | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """A client for a fresh app on `settings` (the real analyzers unless `registry` is given),
    its lifespan running (start-up and shut-down)."""
    application = create_app(settings, registry=registry or shared_registry())
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings, registry=shared_registry())
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Server processes a test starts are always stopped, whatever the test does."""
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def files_under(path: Path) -> list[str]:
    """Every file below `path` (relative names, sorted): the on-disk state a test compares."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def http_scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """An ASGI HTTP scope for driving the app directly (hang-ups, bodies that never come);
    `headers` follow `host: testserver`."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
