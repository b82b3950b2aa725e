"""The service container: every service one running app shares, built once at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from app.analyzers.registry import AnalyzerRegistry, build_registry
from app.core.config import Settings
from app.core.threads import ThreadPool
from app.services.analysis import AnalysisService
from app.services.contour_jobs import ContourJobService
from app.services.forms import FormClassifier
from app.services.idempotency import IdempotencyStore
from app.services.images import ImageService
from app.services.ingest import IngestService
from app.storage.local import LocalImageStore, LocalResultStore


@dataclass
class ServiceContainer:
    """The services route handlers call (reached through `app.api.deps`)."""

    settings: Settings
    registry: AnalyzerRegistry
    images: ImageService
    ingest: IngestService
    analysis: AnalysisService
    forms: FormClassifier
    contour_jobs: ContourJobService
    io_pool: ThreadPool
    analysis_pool: ThreadPool

    async def start(self) -> None:
        """Start background work (the contour job workers; accepted jobs resume)."""
        await self.contour_jobs.start()

    async def stop(self) -> None:
        """Stop background work; unfinished jobs resume at the next start."""
        await self.contour_jobs.stop()

    def close(self) -> None:
        """Stop the worker threads (after in-flight work finishes)."""
        for pool in (self.io_pool, self.analysis_pool):
            pool.shutdown()


def build_container(settings: Settings, registry: AnalyzerRegistry | None = None) -> ServiceContainer:
    """Create the stores (repairing what a crash left) and the services over them (blocking).

    `registry` lets a caller share analyzers (loaded models) between apps, as tests do.
    """
    io_pool = ThreadPool("io", settings.io_threads)
    analysis_pool = ThreadPool("analysis", settings.analysis_threads)
    images = ImageService(
        LocalImageStore(settings.images_dir),
        LocalResultStore(settings.analysis_dir),
        io_pool,
        settings.max_image_pixels,
    )
    idempotency = IdempotencyStore(settings.idempotency_dir, settings.idempotency_ttl_seconds)
    images.recover()
    idempotency.recover()
    registry = registry or build_registry(settings)
    ingest = IngestService(settings, images, idempotency, io_pool)
    analysis = AnalysisService(
        registry,
        images,
        images.results,
        io_pool=io_pool,
        analysis_pool=analysis_pool,
        memory_entries=settings.analysis_memory_cache_entries,
    )
    return ServiceContainer(
        settings=settings,
        registry=registry,
        images=images,
        ingest=ingest,
        analysis=analysis,
        forms=FormClassifier(ingest, analysis),
        contour_jobs=ContourJobService(settings, registry, io_pool, analysis_pool),
        io_pool=io_pool,
        analysis_pool=analysis_pool,
    )
