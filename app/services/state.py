"""The service objects one running app shares, built once at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.analyzers.registry import AnalyzerRegistry, build_registry
from app.core.config import Settings
from app.core.errors import ServiceUnavailable
from app.core.threads import ThreadPool
from app.services.analysis import AnalysisService
from app.services.frontal import FrontalService
from app.services.idempotency import IdempotencyStore
from app.services.ingest import ImageService
from app.storage.local import LocalImageStore, LocalResultStore


@dataclass
class Services:
    """Everything route handlers reach through dependencies."""

    settings: Settings
    registry: AnalyzerRegistry
    images: ImageService
    analysis: AnalysisService
    frontal: FrontalService
    pools: tuple[ThreadPool, ...]

    def close(self) -> None:
        """Stop the worker threads (after in-flight work finishes)."""
        for pool in self.pools:
            pool.shutdown()


def build_services(settings: Settings, registry: AnalyzerRegistry | None = None) -> Services:
    """Create the stores (repairing what a crash left) and the services over them.

    `registry` lets a caller share analyzers (loaded models) between apps, as tests do.
    """
    image_store = LocalImageStore(settings.images_dir)
    result_store = LocalResultStore(settings.analysis_dir)
    idempotency = IdempotencyStore(settings.idempotency_dir, settings.idempotency_ttl_seconds)
    io_pool = ThreadPool("io", settings.io_threads)
    analysis_pool = ThreadPool("analysis", settings.analysis_threads)
    images = ImageService(settings, image_store, result_store, idempotency, io_pool)
    for store in (images, result_store, idempotency):
        store.recover()
    registry = registry or build_registry(settings)
    return Services(
        settings=settings,
        registry=registry,
        images=images,
        analysis=AnalysisService(
            registry,
            images,
            result_store,
            io_pool=io_pool,
            analysis_pool=analysis_pool,
            memory_entries=settings.analysis_memory_cache_entries,
        ),
        frontal=FrontalService(settings, registry, io_pool, analysis_pool),
        pools=(io_pool, analysis_pool),
    )


def services_or_unavailable(state: Any) -> Services:
    """The services on an app's state, or ServiceUnavailable before the lifespan built them."""
    services: Services | None = getattr(state, "services", None)
    if services is None:
        raise ServiceUnavailable("The service is starting")
    return services
