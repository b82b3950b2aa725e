"""Analysis routes: seed 001 `/analyze`, seed 002 `/api/v1/analyze` (lean), the analyzer list."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from app.api.deps import ContainerDep, CurrentPrincipal, container_of, limit_rate, principal_of, rate_limited
from app.api.routing import lean_route, read_body, until_disconnected
from app.core.errors import ValidationFailed
from app.schemas.analyses import AnalyzeRequest, SkinAnalysis
from app.schemas.analyzers import AnalyzerRead
from app.schemas.problems import BAD_IMAGE_ID, IMAGE_NOT_FOUND, UNAUTHORIZED, problem_docs

router = APIRouter(tags=["analyses"], dependencies=[Depends(rate_limited("default"))])

ANALYZE_RESPONSES = {
    200: {
        "description": "The analysis; a repeat returns the same bytes (`X-Cache: HIT`)",
        "headers": {"X-Cache": {"description": "HIT or MISS", "schema": {"type": "string"}}},
    },
    **problem_docs(
        BAD_IMAGE_ID,
        (400, "unknown_analyzer", "Unknown analyzer 'x'; available: skin"),
        UNAUTHORIZED,
        (402, "insufficient_credits", "No credits left: ask an admin for a refill (POST /v1/refill)"),
        IMAGE_NOT_FOUND,
    ),
}

_HIT = {"X-Cache": "HIT"}
_MISS = {"X-Cache": "MISS"}


@lean_route(
    router,
    [
        ("/analyze", "Analyze an image (seed 001)", "analyze_image_legacy"),
        ("/api/v1/analyze", "Analyze an image", "analyze_image"),
    ],
    body=AnalyzeRequest,
    record=True,
    response_model=SkinAnalysis,
    responses=ANALYZE_RESPONSES,
)
async def analyze_image(request: Request) -> Response:
    """Analyze an uploaded image; idempotent, cached in `data/analysis/`.

    A repeat returns byte-identical JSON with `X-Cache: HIT`; concurrent first requests
    share one computation.
    """
    principal = await principal_of(request)
    settings = container_of(request).settings
    try:
        body = AnalyzeRequest.model_validate_json(await read_body(request, settings.max_json_body_bytes))
    except ValidationError as exc:
        raise ValidationFailed.from_errors(exc.errors(include_url=False)) from None
    container = container_of(request)
    analysis = container.analysis
    outcome = analysis.hit(body.image_id, principal, body.analyzer, body.params)
    if outcome is None:
        await limit_rate(request, "analyze", principal)
        outcome = await until_disconnected(
            request, analysis.analyze(body.image_id, principal, body.analyzer, body.params)
        )
    image = container.images.cached(body.image_id)
    if image is not None:
        meta = image.metadata
        request.state.history = {
            "request_type": "image",
            "input_data_size": meta.size_bytes,
            "image_width": meta.width,
            "image_height": meta.height,
        }
    return Response(outcome.body, 200, _HIT if outcome.cached else _MISS, "application/json")


@router.get(
    "/api/v1/analyzers",
    response_model=list[AnalyzerRead],
    summary="List analyzers",
    responses=problem_docs(UNAUTHORIZED),
)
async def list_analyzers(container: ContainerDep, _: CurrentPrincipal) -> list[AnalyzerRead]:
    """Every analyzer with its version and the JSON Schema of its params; ones that failed to
    load are listed with `available: false` and the reason."""
    registry = container.registry
    rows = [
        AnalyzerRead(
            name=analyzer.name,
            version=analyzer.version,
            description=analyzer.description,
            params=analyzer.params_model.model_json_schema(),
        )
        for analyzer in registry
    ]
    rows += [
        AnalyzerRead(name=name, version="", description="", params={}, available=False, reason=reason)
        for name, reason in sorted(registry.unavailable.items())
    ]
    return sorted(rows, key=lambda row: row.name)
