"""Analysis routes: seed 001 `/analyze`, seed 002 `/api/v1/analyze`."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from app.api.deps import AnalysisServiceDep, PrincipalDep
from app.schemas.analyses import AnalyzeRequest, SkinAnalysis
from app.schemas.problems import BAD_IMAGE_ID, IMAGE_NOT_FOUND, UNAUTHORIZED, problem_docs

router = APIRouter(tags=["analyses"])

ANALYZE_RESPONSES = {
    200: {
        "description": "The analysis; a repeat returns the same bytes (`X-Cache: HIT`)",
        "headers": {"X-Cache": {"description": "HIT or MISS", "schema": {"type": "string"}}},
    },
    **problem_docs(
        BAD_IMAGE_ID,
        (400, "unknown_analyzer", "Unknown analyzer 'x'; available: skin"),
        UNAUTHORIZED,
        IMAGE_NOT_FOUND,
    ),
}


async def analyze_image(request: AnalyzeRequest, analysis: AnalysisServiceDep, _: PrincipalDep) -> Response:
    """Analyze an uploaded image; idempotent, cached in `data/analysis/`."""
    outcome = await analysis.analyze(request.image_id, request.analyzer, request.params)
    return Response(
        outcome.body,
        media_type="application/json",
        headers={"X-Cache": "HIT" if outcome.cached else "MISS"},
    )


for _path, _summary, _op in (
    ("/analyze", "Analyze an image (seed 001)", "analyze_image_legacy"),
    ("/api/v1/analyze", "Analyze an image", "analyze_image"),
):
    router.add_api_route(
        _path,
        analyze_image,
        methods=["POST"],
        summary=_summary,
        operation_id=_op,
        response_model=SkinAnalysis,
        responses=ANALYZE_RESPONSES,
        response_class=Response,
    )
