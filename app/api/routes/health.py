"""Open health routes: `/health` (seed 001), `/healthz` (liveness), `/readyz` (readiness)."""

from __future__ import annotations

import os
import shutil

import anyio
from fastapi import APIRouter
from starlette.responses import JSONResponse

from app.api.deps import ServicesDep
from app.schemas.health import Health, Readiness, ReadinessCheck
from app.services.state import Services

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, summary="Health check (seed 001)", operation_id="health")
async def health() -> dict[str, str]:
    """Always `healthy` while the process serves requests."""
    return {"status": "healthy"}


@router.get("/healthz", response_model=Health, summary="Liveness probe", operation_id="healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


def _checks(services: Services) -> list[ReadinessCheck]:
    settings = services.settings
    checks = []
    writable = all(
        os.access(d, os.W_OK) for d in (settings.images_dir, settings.analysis_dir, settings.idempotency_dir)
    )
    checks.append(ReadinessCheck(name="data_dir_writable", ok=writable, detail=str(settings.data_dir)))
    free = shutil.disk_usage(settings.data_dir).free
    checks.append(
        ReadinessCheck(
            name="free_disk",
            ok=free >= settings.min_free_disk_bytes,
            detail=f"{free} bytes free, {settings.min_free_disk_bytes} required",
        )
    )
    names = services.registry.names()
    missing = services.registry.unavailable
    detail = "loaded: " + ", ".join(names)
    if missing:
        detail += "; not loaded: " + "; ".join(f"{name} ({why})" for name, why in sorted(missing.items()))
    checks.append(ReadinessCheck(name="analyzers_loaded", ok=bool(names) and not missing, detail=detail))
    return checks


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness probe",
    responses={503: {"model": Readiness, "description": "A check failed"}},
)
async def readyz(services: ServicesDep) -> JSONResponse:
    """Ready when the data dir is writable, disk space is above the floor and analyzers are loaded."""
    checks = await anyio.to_thread.run_sync(_checks, services)
    ready = all(c.ok for c in checks)
    body = Readiness(status="ready" if ready else "not ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


# Probes often use HEAD; same handlers, kept out of the schema (one operation per route).
for _path, _endpoint in (("/health", health), ("/healthz", healthz), ("/readyz", readyz)):
    router.add_api_route(
        _path, _endpoint, methods=["HEAD"], include_in_schema=False, operation_id=f"{_endpoint.__name__}_head"
    )
