"""`GET /api/v1/analyzers`: the analyzers, their versions and params."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import PrincipalDep, ServicesDep
from app.schemas.analyzers import AnalyzerRead
from app.schemas.problems import UNAUTHORIZED, problem_docs

router = APIRouter(tags=["analyses"])


@router.get(
    "/api/v1/analyzers",
    response_model=list[AnalyzerRead],
    summary="List analyzers",
    responses=problem_docs(UNAUTHORIZED),
)
async def list_analyzers(services: ServicesDep, _: PrincipalDep) -> list[AnalyzerRead]:
    """Every analyzer with its version and the JSON Schema of its params; ones that failed to
    load are listed with `available: false` and the reason."""
    registry = services.registry
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
