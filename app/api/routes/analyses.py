"""Analysis routes: seed 001 `/analyze`, seed 002 `/api/v1/analyze` (lean), the analyzer list."""

from __future__ import annotations

from pydantic import ValidationError
from starlette.responses import Response

from app.api.calls import Call
from app.api.deps import AnalyzersDep, CurrentPrincipal
from app.api.routing import (
    DeclaredRouter,
    Described,
    Policy,
    Reply,
    described_as_json,
    lean_route,
    until_disconnected,
)
from app.core.errors import ValidationFailed
from app.schemas.analyses import AnalyzeRequest, SkinAnalysis
from app.schemas.analyzers import AnalyzerRead
from app.schemas.problems import BAD_IMAGE_ID, IMAGE_NOT_FOUND, UNAUTHORIZED, problem_docs
from app.services.analysis.service import AnalysisService
from app.services.images.catalog import ImageService

router = DeclaredRouter(Policy(authenticate=True, rate_limit="default"), tags=["analyses"])

ANALYZE_RESPONSES = {
    200: {
        "description": "The analysis; a repeat returns the same bytes (`X-Cache: HIT`); a near-duplicate's "
        "result says `reused_from` (`X-Cache: REUSED`)",
        "headers": {"X-Cache": {"description": "HIT, MISS or REUSED", "schema": {"type": "string"}}},
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
_REUSED = {"X-Cache": "REUSED"}


@lean_route(
    router,
    [
        ("/analyze", "Analyze an image (seed 001)", "analyze_image_legacy"),
        ("/api/v1/analyze", "Analyze an image", "analyze_image"),
    ],
    # The body is read by the pipeline (MAX_JSON_BODY_BYTES); a cached result is not counted
    # against a rate limit, a computation against `analyze`'s.
    policy=Policy(authenticate=True, history=described_as_json),
    body=AnalyzeRequest,
    response_model=SkinAnalysis,
    responses=ANALYZE_RESPONSES,
)
async def analyze_image(call: Call, analysis: AnalysisService, images: ImageService) -> Reply:
    """Analyze an uploaded image; idempotent, cached in `data/analysis/`.

    A repeat returns byte-identical JSON with `X-Cache: HIT`; concurrent first requests
    share one computation. A near-duplicate's result may answer (`X-Cache: REUSED`, the
    body's `reused_from`) unless `reuse` is false.
    """
    principal = await call.caller()
    try:
        body = AnalyzeRequest.model_validate_json(call.body or b"")
    except ValidationError as exc:
        raise ValidationFailed.from_errors(exc.errors(include_url=False)) from None
    analysis.reuse_threshold(body.analyzer, body.reuse, body.reuse_distance)  # 400 before a hit, too
    outcome = analysis.hit(body.image_id, principal, body.analyzer, body.params)
    if outcome is None:
        await call.limit("analyze")
        work = analysis.analyze(
            body.image_id,
            principal,
            body.analyzer,
            body.params,
            reuse=body.reuse,
            reuse_distance=body.reuse_distance,
        )
        outcome = await until_disconnected(call.request, work)
    headers = _REUSED if outcome.reused else _HIT if outcome.cached else _MISS
    response = Response(outcome.body, 200, headers, "application/json")
    image = images.cached(body.image_id)
    if image is None:
        return Reply(response, Described())
    meta = image.metadata
    return Reply(response, Described("image", meta.size_bytes, meta.width, meta.height))


@router.get(
    "/api/v1/analyzers",
    response_model=list[AnalyzerRead],
    summary="List analyzers",
    responses=problem_docs(UNAUTHORIZED),
)
async def list_analyzers(registry: AnalyzersDep, _: CurrentPrincipal) -> list[AnalyzerRead]:
    """Every analyzer with its version and the JSON Schema of its params; ones that failed to
    load are listed with `available: false` and the reason."""
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
