"""Services built directly (no HTTP) over a tmp data dir, with injected analyzers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from app.analyzers.base import Analyzer
from app.analyzers.registry import AnalyzerRegistry
from app.composition import ServiceContainer, build_container
from app.core.config import Settings
from app.services.accounts.principals import ANONYMOUS_PRINCIPAL, Principal
from app.services.images.ingest import UploadOutcome


@asynccontextmanager
async def running(settings: Settings, *analyzers: Analyzer) -> AsyncIterator[ServiceContainer]:
    """A started service container over `settings` with exactly `analyzers`."""
    container = build_container(settings, AnalyzerRegistry(analyzers))
    await container.start()
    try:
        yield container
    finally:
        await container.stop()
        container.close()


async def publish(
    container: ServiceContainer, data: bytes, name: str = "p.jpg", owner: Principal = ANONYMOUS_PRINCIPAL
) -> UploadOutcome:
    """Publish `data` as an image through the ingest service (as a finished download would)."""
    path: Path = container.images.store.temp_path()
    path.write_bytes(data)
    return await container.ingest.ingest_file(path, owner, name)


SettingsFactory = Callable[..., Settings]
