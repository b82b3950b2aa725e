"""Analysis routes: seed 001 `/analyze`, seed 002 `/api/v1/analyze` (lean routes)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from app.api.deps import PrincipalDep
from app.api.lean import add_lean_routes, principal_of, read_body, send_bytes, services_of
from app.schemas.analyses import AnalyzeRequest, SkinAnalysis
from app.schemas.problems import BAD_IMAGE_ID, IMAGE_NOT_FOUND, UNAUTHORIZED, problem_docs

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

_HIT = [(b"x-cache", b"HIT")]
_MISS = [(b"x-cache", b"MISS")]


async def analyze_handler(scope: Scope, receive: Receive, send: Send) -> None:
    """Serve an analysis: validate the JSON body, then one call to the analysis service."""
    services = services_of(scope)
    principal_of(scope, services)
    try:
        request = AnalyzeRequest.model_validate_json(await read_body(receive))
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None
    outcome = await services.analysis.analyze(request.image_id, request.analyzer, request.params)
    await send_bytes(send, 200, outcome.body, _HIT if outcome.cached else _MISS)


async def analyze_image(request: AnalyzeRequest, _: PrincipalDep) -> SkinAnalysis:
    """Analyze an uploaded image; idempotent, cached in `data/analysis/`.

    A repeat returns byte-identical JSON with `X-Cache: HIT`; concurrent first requests
    share one computation.
    """
    # Documentation only: LeanRoute serves this operation with `analyze_handler`.
    raise AssertionError("served by analyze_handler")


def install_analyze_routes(app: FastAPI) -> None:
    """Add the seed 001 and seed 002 analyze routes."""
    add_lean_routes(
        app,
        [
            ("/analyze", "Analyze an image (seed 001)", "analyze_image_legacy"),
            ("/api/v1/analyze", "Analyze an image", "analyze_image"),
        ],
        analyze_image,
        analyze_handler,
        methods=["POST"],
        tags=["analyses"],
        response_model=SkinAnalysis,
        responses=ANALYZE_RESPONSES,
    )
