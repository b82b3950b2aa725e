"""The OpenAPI document as this server is configured, not as the code could be configured.

FastAPI documents every route that reads credentials with both security schemes, required.
`install_openapi` rewrites each operation's `security` from what its dependencies demand and
from the settings:

- routes for any caller (`CurrentPrincipal`): the API key (only when `API_KEYS` is set: without
  keys the header is ignored, the scheme stays declared for seed 002's clients) or a bearer
  token, and the empty requirement `{}` (optional) when anonymous calls are served
  (`ANONYMOUS_ACCESS`);
- routes for a logged-in user or an admin: a bearer token, required (an API key is refused);
- routes that read credentials when sent (`OptionalPrincipal`): optional;
- `/metrics` with `METRICS_TOKEN` set: its own bearer token.

Responses every operation can get are documented where FastAPI cannot see them: 401 where
credentials are read; 400 `validation_error` instead of FastAPI's generated 422
`HTTPValidationError` (validation errors are answered 400, the seeds' status); 503 `overloaded`
(load shedding) and, with `RATE_LIMITS_ENABLED`, 429 `too_many_requests` on every route but
the probes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import RouteContext, iter_route_contexts

from app.api import deps
from app.api.problems import PROBLEM_MEDIA_TYPE as PROBLEM
from app.api.settings import DocsSettings
from app.api.traffic import EXEMPT
from app.schemas.problems import UNAUTHORIZED, problem_docs

API_KEY = "APIKeyHeader"
BEARER = "OAuth2PasswordBearer"
METRICS_TOKEN = "MetricsToken"
_USER_ONLY = (deps.current_user, deps.current_admin, deps.history_admin)
_VALIDATION_REF = "#/components/schemas/HTTPValidationError"
VALIDATION_ERROR = (
    400,
    "validation_error",
    "Invalid request: limit: Input should be greater than or equal to 1",
)


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def operation_security(route: RouteContext, settings: DocsSettings) -> list[dict[str, list[str]]] | None:
    """The security requirements of a route (its router's dependencies included) under `settings`
    (None: it reads no credentials)."""
    calls = set(_calls(route.dependant))
    if any(call in calls for call in _USER_ONLY):
        return [{BEARER: []}]
    any_caller = deps.current_principal in calls
    if not any_caller and deps.optional_principal not in calls:
        return None
    requirements: list[dict[str, list[str]]] = [{API_KEY: []}] if settings.api_keys_set else []
    requirements.append({BEARER: []})
    if not any_caller or settings.anonymous_allowed:
        requirements.append({})
    return requirements


def add_problem(operation: dict[str, Any], status: int, code: str, detail: str) -> None:
    """Document a problem+json answer of an operation (merged into that status's examples)."""
    doc = problem_docs((status, code, detail))[status]
    example = doc["content"][PROBLEM]["examples"][code]
    responses: dict[str, Any] = operation.setdefault("responses", {})
    entry = responses.setdefault(str(status), {"description": doc["description"]})
    content = entry.setdefault("content", {}).setdefault(PROBLEM, {})
    content.setdefault("schema", {"$ref": "#/components/schemas/Problem"})
    content.setdefault("examples", {}).setdefault(code, example)


def _validation_as_400(operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.get("responses", {})
    generated = responses.get("422", {}).get("content", {}).get("application/json", {})
    if generated.get("schema", {}).get("$ref") == _VALIDATION_REF:
        del responses["422"]
        add_problem(operation, *VALIDATION_ERROR)


def _document_operation(
    operation: dict[str, Any], path: str, security: list[dict[str, list[str]]] | None, settings: DocsSettings
) -> None:
    operation.pop("security", None)
    if security is not None:
        operation["security"] = security
        add_problem(operation, *UNAUTHORIZED)
    _validation_as_400(operation)
    if path not in EXEMPT:
        add_problem(operation, 503, "overloaded", "The service is at capacity; try again shortly")
        if settings.rate_limits_enabled:
            add_problem(operation, 429, "too_many_requests", "Too many requests; try again later")
    operation["responses"] = dict(sorted(operation["responses"].items()))


def honest_openapi(schema: dict[str, Any], app: FastAPI, settings: DocsSettings) -> dict[str, Any]:
    """Rewrite a generated document in place (see the module's docstring) and return it."""
    schemes: dict[str, Any] = schema.setdefault("components", {}).setdefault("securitySchemes", {})
    paths: dict[str, dict[str, Any]] = schema.get("paths", {})
    for route in iter_route_contexts(app.routes):
        path = route.path_format
        if getattr(route, "dependant", None) is None or not route.include_in_schema or path is None:
            continue
        security = operation_security(route, settings)
        for method in route.methods or ():
            operation = paths.get(path, {}).get(method.lower())
            if operation is not None:
                _document_operation(operation, path, security, settings)
    metrics = paths.get("/metrics", {}).get("get")
    if metrics is not None and settings.metrics_token_set:
        schemes[METRICS_TOKEN] = {
            "type": "http",
            "scheme": "bearer",
            "description": "The METRICS_TOKEN setting",
        }
        metrics["security"] = [{METRICS_TOKEN: []}]
        add_problem(metrics, 401, "unauthorized", "The metrics token is required")
    component_schemas = schema["components"].setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        component_schemas.pop(name, None)
    return schema


def install_openapi(app: FastAPI, settings: DocsSettings) -> None:
    """Serve `honest_openapi` of FastAPI's generated document (built once, on first request)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = honest_openapi(generate(), app, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
