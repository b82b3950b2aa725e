"""The service container: every service one running app shares, built once at start-up.

Each service gets its own settings section (`IngestSettings`, `JobSettings`, ...), cut from
`Settings` here; routes receive the services they use by type (`provider`, through
`app.api.deps`), never the container.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from operator import attrgetter
from typing import TypeVar, cast, get_type_hints

import anyio.to_thread
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.analyzers.registry import AnalyzerRegistry, build_registry
from app.analyzers.settings import AnalyzerSettings
from app.core.config import Settings
from app.core.scale_out import ScaleOutSettings, check_scale_out
from app.core.security import SECRET_NAME, JwtConfig, new_secret
from app.core.tasks import cancel_and_wait
from app.core.threads import ThreadPool
from app.db import secrets as shared_secrets
from app.db.engine import create_engine, is_outage, is_sqlite, session_factory
from app.db.migrate import upgrade
from app.services.accounts.credits import CreditService
from app.services.accounts.erasure import AccountEraser
from app.services.accounts.logins import Logins
from app.services.accounts.principals import PrincipalResolver, UserDirectory
from app.services.accounts.refills import Refills
from app.services.accounts.service import AccountService
from app.services.accounts.settings import AccessSettings, AccountSettings, DeviceCookieSettings
from app.services.analysis.classify import ClassifyImages
from app.services.analysis.forms import FormClassifier
from app.services.analysis.reuse import perceptual_reuse
from app.services.analysis.scheduler import LaneClient, Lanes
from app.services.analysis.service import AnalysisService
from app.services.analysis.settings import ReuseSettings
from app.services.history import HistoryService
from app.services.images.catalog import ImageService
from app.services.images.idempotency import IdempotencyStore
from app.services.images.ingest import IngestService
from app.services.images.previews import PreviewService
from app.services.images.settings import IngestSettings
from app.services.jobs.contours import ContourJobService
from app.services.jobs.reuse import contour_reuse
from app.services.jobs.settings import JobSettings
from app.services.metrics_export import MetricsExport
from app.services.rate_limit_settings import RateLimitSettings
from app.services.rate_limits import RateLimits
from app.services.readiness import Readiness
from app.services.readiness_settings import ReadinessSettings
from app.services.webhooks.service import WebhookService
from app.services.webhooks.settings import DeliverySettings
from app.storage.local import LocalImageStore, LocalResultStore
from app.storage.object_images import ObjectImages

logger = logging.getLogger("app")

DATABASE_RETRY_SECONDS = 2.0
T = TypeVar("T")


@dataclass
class ServiceContainer:
    """The services route handlers call (reached through the API layer's dependencies)."""

    settings: Settings
    registry: AnalyzerRegistry
    engine: AsyncEngine
    principals: PrincipalResolver
    accounts: AccountService
    logins: Logins
    credits: CreditService
    refills: Refills
    eraser: AccountEraser
    history: HistoryService
    rate_limits: RateLimits
    images: ImageService
    previews: PreviewService
    ingest: IngestService
    analysis: AnalysisService
    classify: ClassifyImages
    forms: FormClassifier
    contour_jobs: ContourJobService
    metrics: MetricsExport
    webhooks: WebhookService
    io_pool: ThreadPool
    lanes: Lanes
    idempotency: IdempotencyStore
    jwt_config: JwtConfig
    # False until the database start-up steps are done (PostgreSQL may be down at boot).
    database_ready: bool = False
    _database_task: asyncio.Task[None] | None = field(default=None, repr=False)
    readiness: Readiness = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.readiness = Readiness(
            ReadinessSettings.from_settings(self.settings),
            self.registry,
            self.io_pool,
            self.engine,
            self.rate_limits,
            lambda: self.database_ready,
            self.images.objects,
            self.contour_jobs.queue,
        )

    async def start(self) -> None:
        """Migrate the database, repair what a crash left, start background work.

        A PostgreSQL server that cannot be reached does not stop the start: the process serves
        (503 `database_unavailable`, readiness failing) and retries every 2 s until it can."""
        if self.images.objects is not None:
            await self.images.objects.start()  # no connection yet: an outage is per request
        try:
            await self._start_database()
        except Exception as exc:
            if is_sqlite(self.settings.database) or not (
                is_outage(exc) or isinstance(exc, OSError | TimeoutError)
            ):
                raise
            logger.error(
                "database unreachable at start-up (%s: %s): not ready; retrying", type(exc).__name__, exc
            )
            self._database_task = asyncio.create_task(self._retry_database(), name="database-start")
        await self.history.start()
        await self.contour_jobs.start()
        # Deliveries run where the job engine's workers run (scale-out: JOB_WORKER_IN_PROCESS, app.worker)
        if getattr(self.contour_jobs.queue, "run_worker", True):
            await self.webhooks.start()

    async def _start_database(self) -> None:
        async with self.engine.connect() as connection:  # DatabaseUnavailable if it cannot connect
            await connection.execute(text("SELECT 1"))
        await anyio.to_thread.run_sync(upgrade, self.settings.database)
        await self._load_secret()
        await self.images.recover()
        await self.idempotency.recover()
        await self.accounts.ensure_env_admin()
        await self.credits.recover()
        self.database_ready = True

    async def _load_secret(self) -> None:
        """SECRET_KEY unset: the signing key every replica on this database shares, generated
        once (or adopted from an earlier version's DATA_DIR/secret_key) and kept in the database."""
        if self.jwt_config.secret is not None:
            return
        candidate = await anyio.to_thread.run_sync(new_secret, self.settings.data_dir)
        async with self.accounts.sessions.begin() as session:
            key = await shared_secrets.get_or_create(
                session, name=SECRET_NAME, candidate=candidate, now=datetime.now(UTC)
            )
        if key == candidate:
            logger.warning(
                "SECRET_KEY is not set: using the key kept in the database (set SECRET_KEY in production)"
            )
        self.jwt_config.secret = key.encode()

    async def _retry_database(self) -> None:
        while not self.database_ready:
            await asyncio.sleep(DATABASE_RETRY_SECONDS)
            try:
                await self._start_database()
            except Exception as exc:
                logger.warning("database still unreachable (%s: %s); retrying", type(exc).__name__, exc)
        logger.info("database reachable: start-up finished, ready")

    async def stop(self) -> None:
        """Stop background work (unfinished jobs resume at the next start), write the history."""
        await cancel_and_wait(self._database_task)
        self.previews.close()
        await self.webhooks.stop()
        await self.contour_jobs.stop()
        await self.idempotency.close()
        await self.history.stop()
        await self.accounts.stop()
        await anyio.to_thread.run_sync(self.images.close)
        if self.images.objects is not None:
            await self.images.objects.close()
        await self.engine.dispose()

    def close(self) -> None:
        """Stop the worker threads (after in-flight work finishes)."""
        self.io_pool.shutdown()
        self.accounts.close()
        self.lanes.shutdown()


def provider(kind: type[T]) -> Callable[[ServiceContainer], T]:
    """How to get the one service of type `kind` from a container (TypeError if none is)."""
    hints = get_type_hints(ServiceContainer)
    names = [f.name for f in fields(ServiceContainer) if hints[f.name] is kind]
    if len(names) != 1:
        raise TypeError(f"the container holds no single {kind.__name__}")
    return cast(Callable[[ServiceContainer], T], attrgetter(names[0]))


def object_images(settings: Settings) -> ObjectImages | None:
    """The object store of `STORAGE_URL=s3://bucket/prefix` (None: the data dir)."""
    if settings.storage_url is None:
        return None
    from app.storage.s3 import S3ObjectStore  # aiobotocore: loaded only when configured

    store = S3ObjectStore.from_url(
        settings.storage_url,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        connect_timeout=settings.s3_connect_timeout_seconds,
        read_timeout=settings.s3_read_timeout_seconds,
        max_attempts=settings.s3_max_attempts,
        max_connections=settings.s3_max_connections,
        retry_after=settings.s3_retry_after_seconds,
    )
    return ObjectImages(store, settings.images_dir)


def build_container(settings: Settings, registry: AnalyzerRegistry | None = None) -> ServiceContainer:
    """Create the stores and the services over them (blocking; nothing connects yet).

    `registry` lets a caller share analyzers (loaded models) between apps, as tests do.
    """
    if settings.environment == "production" and settings.secret_key is None:
        raise RuntimeError("SECRET_KEY must be set in production")
    check_scale_out(ScaleOutSettings.from_settings(settings))
    io_pool = ThreadPool("io", settings.io_threads)
    lanes = Lanes(
        settings.analysis_threads, settings.analysis_queue_limit, settings.analysis_max_queue_wait_seconds
    )
    engine = create_engine(settings.database, connect_timeout=settings.database_connect_timeout_seconds)
    sessions = session_factory(engine)
    secret = settings.secret_key.get_secret_value() if settings.secret_key else None
    jwt_config = JwtConfig(  # an unset secret is loaded from the database at start
        secret=secret.encode() if secret else None,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    users = UserDirectory(sessions, settings.user_cache_seconds)
    images = ImageService(
        LocalImageStore(settings.images_dir),
        LocalResultStore(settings.analysis_dir),
        sessions,
        settings.database,
        io_pool,
        settings.max_image_pixels,
        cache_entries=settings.image_cache_entries,
        objects=object_images(settings),
        orphan_grace_seconds=settings.storage_orphan_grace_seconds,
    )
    idempotency = IdempotencyStore(
        sessions,
        settings.idempotency_ttl_seconds,
        settings.idempotency_lease_seconds,
        legacy_root=settings.idempotency_dir,
    )
    registry = registry or build_registry(AnalyzerSettings.from_settings(settings))
    credits = CreditService(sessions, lease_seconds=settings.credit_hold_lease_seconds)
    history = HistoryService(sessions, settings.history_flush_seconds, settings.history_batch_size)
    previews = PreviewService(
        images,
        lanes.heavy,
        io_pool,
        settings.preview_widths,
        settings.preview_jpeg_quality,
        settings.rendition_formats,
        settings.rendition_jpeg_quality,
    )
    warm = previews.warm if settings.rendition_at_upload else None
    ingest = IngestService(IngestSettings.from_settings(settings), images, idempotency, io_pool, warm)
    analysis = AnalysisService(
        registry,
        images,
        images.results,
        io_pool=io_pool,
        lanes=lanes,
        memory_entries=settings.analysis_memory_cache_entries,
        credits=credits,
        reuse=perceptual_reuse(
            ReuseSettings.from_settings(settings), images, io_pool, previews.pixels, previews.local_pixels
        ),
        pixels=previews.pixels,
        local_pixels=previews.local_pixels,
    )
    webhooks = WebhookService(DeliverySettings.from_settings(settings), sessions)
    contour_jobs = ContourJobService(
        JobSettings.from_settings(settings),
        registry,
        io_pool,
        LaneClient(lanes.heavy, "contour-jobs"),
        credits,
        objects=images.objects.store if images.objects is not None else None,
        webhooks=webhooks,
        reuse=contour_reuse(ReuseSettings.from_settings(settings), sessions),
    )
    accounts = AccountService(AccountSettings.from_settings(settings), sessions, jwt_config, users)
    rate_limits = RateLimits(RateLimitSettings.from_settings(settings))
    return ServiceContainer(
        settings=settings,
        registry=registry,
        engine=engine,
        principals=PrincipalResolver(AccessSettings.from_settings(settings), jwt_config, users),
        accounts=accounts,
        logins=Logins(accounts, rate_limits, DeviceCookieSettings.from_settings(settings)),
        credits=credits,
        refills=Refills(accounts, credits, settings.token_refill_amount),
        eraser=AccountEraser(sessions, images, contour_jobs, history, users, idempotency),
        history=history,
        rate_limits=rate_limits,
        images=images,
        previews=previews,
        ingest=ingest,
        analysis=analysis,
        classify=ClassifyImages(registry, analysis, ingest, images, credits, settings.max_json_body_bytes),
        forms=FormClassifier(ingest, analysis, credits),
        contour_jobs=contour_jobs,
        metrics=MetricsExport(settings.metrics_enabled, settings.metrics_token, io_pool),
        webhooks=webhooks,
        io_pool=io_pool,
        lanes=lanes,
        idempotency=idempotency,
        jwt_config=jwt_config,
    )
