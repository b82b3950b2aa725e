"""Application factory: `create_app(settings)`; `app.main:app` is built on first access.

`python -m uvicorn app.main:app` reads settings from the environment (and `.env`) when
uvicorn looks the attribute up, not at import time, so tests build their own apps with
their own settings.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from app import __version__
from app.analyzers.registry import AnalyzerRegistry
from app.api import connections
from app.api.openapi import install_openapi
from app.api.pipeline import RequestPipeline
from app.api.problems import register_exception_handlers
from app.api.router import ROUTERS, include_routes
from app.api.settings import ConnectionLimits, DocsSettings, PipelineSettings
from app.api.stalls import StallGuard
from app.composition import build_container
from app.core import metrics
from app.core.config import Settings, get_settings
from app.core.logging import configure_logging
from app.services.rate_limits import ROUTE_CLASSES

logger = logging.getLogger("app")

DESCRIPTION = """
Upload a photo once, then ask for analyses of it as often as you like: every retry
returns the same bytes, computed once.

**Two steps**: `POST /api/v1/upload` (multipart field `file`, JPEG or PNG) returns an
`image_id`; `POST /api/v1/analyze` with `{"image_id": ...}` returns the analysis.
Seed-compatible aliases: `POST /upload`, `POST /analyze`, `GET /health`.

**Auth**: an API key (`X-API-KEY`, when the server sets `API_KEYS`) or a bearer token from
`/token` (use *Authorize*). Without either, calls are anonymous when `ANONYMOUS_ACCESS` allows.

**Errors** are `application/problem+json` with a human `detail` and a stable `code`.
"""

TAGS = [
    {"name": "images", "description": "Upload, read and delete images"},
    {"name": "analyses", "description": "Idempotent, cached analyses of uploaded images"},
    {"name": "health", "description": "Liveness and readiness (never need a key)"},
    {"name": "accounts", "description": "Registration, tokens, profile, erasure"},
    {"name": "admin", "description": "Credits refill, request history and statistics (admins)"},
    {"name": "webhooks", "description": "Signed callbacks (`callback_url`): your secret and deliveries"},
]


_frozen = False  # this process has frozen what its first start-up left alive


def _freeze_what_start_up_built() -> None:
    """Move every object alive after the process's first start-up (modules, models, settings,
    services: some 200,000) out of the cyclic garbage collector's reach, once per process.

    A full collection walks every tracked object; with these in it, one took ~0.1 s here
    (0.04-0.12 s, as the machine's load goes), came every few thousand requests (~20 µs a
    request, amortized) and stopped every request in flight meanwhile. Objects made later are
    collected as before; these are kept for the process's life, as they would be anyway.
    Collected first, so that nothing already unreachable is kept."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Build the services once (repairing what a crash left behind) and share them."""
    settings: Settings = app.state.settings
    await anyio.to_thread.run_sync(metrics.clear_dead_processes)
    container = await anyio.to_thread.run_sync(build_container, settings, app.state.registry)
    app.state.services = container
    metrics.initialize(container.registry.names(), ROUTE_CLASSES)
    await container.start()
    _freeze_what_start_up_built()
    if settings.anonymous_allowed:
        logger.warning("ANONYMOUS_ACCESS is on: calls without credentials are served (see README, Access)")
    logger.info("ready: data_dir=%s analyzers=%s", settings.data_dir, container.registry.names())
    try:
        yield
    finally:
        await container.stop()
        await anyio.to_thread.run_sync(container.close)


def create_app(settings: Settings | None = None, *, registry: AnalyzerRegistry | None = None) -> FastAPI:
    """A configured application; nothing is read or written until its lifespan starts.

    Models are loaded by the lifespan unless a ready `registry` is given (tests share one).
    """
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = FastAPIOffline(
        title="Image upload-then-analyze service",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        # validatorUrl: no badge fetched from validator.swagger.io (offline; the docs CSP forbids it)
        # OpenTelemetry off: /metrics is Prometheus; FastAPI's checks cost ~30 µs per request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        swagger_ui_parameters={"persistAuthorization": True, "validatorUrl": None},
    )
    app.state.settings = settings
    app.state.registry = registry
    # uvicorn's protocols: head timeout, connections per address
    connections.install(ConnectionLimits.from_settings(settings))
    app.state.stalls = StallGuard(
        settings.body_read_timeout_seconds,
        min_rate_bytes=settings.body_min_rate_bytes,
        window=settings.body_min_rate_window_seconds,
        grace=settings.body_grace_seconds,
        deadline=settings.request_body_deadline_seconds,
    )
    register_exception_handlers(app)
    include_routes(app, web_page=settings.web_page_enabled)
    install_openapi(app, DocsSettings.from_settings(settings))
    # Every layer a request passes, in one place (app.api.pipeline): request id and log,
    # security, CORS and RateLimit headers, admission, the route's policy (body cap,
    # caller, rate limit), lean dispatch, history; FastAPI's router behind it.
    app.add_middleware(
        RequestPipeline,
        settings=PipelineSettings.from_settings(settings),
        routers=ROUTERS,
        stalls=app.state.stalls,
    )
    return app


_app: FastAPI | None = None


def __getattr__(name: str) -> Any:
    # `uvicorn app.main:app` resolves the attribute here, once.
    global _app
    if name == "app":
        if _app is None:
            _app = create_app()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
