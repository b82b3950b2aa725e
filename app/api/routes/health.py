"""Open health routes: `/health` (seed 001), `/healthz` (liveness), `/readyz` (readiness)."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import JSONResponse, Response

from app.api.deps import MetricsDep, ReadinessDep
from app.schemas.health import Health, Readiness, ReadinessCheck

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, summary="Health check (seed 001)", operation_id="health")
async def health() -> dict[str, str]:
    """Always `healthy` while the process serves requests."""
    return {"status": "healthy"}


@router.get("/healthz", response_model=Health, summary="Liveness probe", operation_id="healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness probe",
    responses={503: {"model": Readiness, "description": "A check failed"}},
)
async def readyz(readiness: ReadinessDep) -> JSONResponse:
    """Ready when the data dir is writable, disk space is above the floor, analyzers are loaded
    and the database server (PostgreSQL) answers; Redis down is `degraded` unless fail-closed."""
    checks = [ReadinessCheck(**asdict(check)) for check in await readiness.checks()]
    ready = all(c.ok for c in checks if c.required)
    status = "not ready" if not ready else "ready" if all(c.ok for c in checks) else "degraded"
    body = Readiness(status=status, checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def prometheus_metrics(export: MetricsDep, request: Request) -> Response:
    """Every worker's metrics (METRICS_ENABLED; METRICS_TOKEN, when set, as a bearer token)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    bearer = token.strip() if scheme.lower() == "bearer" else None
    return Response(await export.exposition(bearer), media_type=CONTENT_TYPE_LATEST)
