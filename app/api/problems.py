"""The one mapping from exceptions to HTTP: RFC 9457 problem+json bodies with `detail` and `code`.

Domain errors (`app.core.errors.AppError`) carry their status and code; FastAPI's request
validation errors become 400 `validation_error` (the seeds' status); routing errors keep
their status with a stable code; a database that is unreachable (`app.db.engine.is_outage`:
refused, timed out, connection lost) is 503 `database_unavailable` with `Retry-After`, counted
in `dependency_errors_total{dependency="database",use="request"}`; anything unexpected is a
logged 500 without internals.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response
from starlette.routing import Match

from app.api.security_headers import error_headers
from app.core import metrics
from app.core.errors import (
    AppError,
    DatabaseUnavailable,
    Overloaded,
    StorageFull,
    ValidationFailed,
    is_out_of_descriptors,
    is_storage_full,
)
from app.db.engine import is_outage

logger = logging.getLogger("app.errors")

PROBLEM_MEDIA_TYPE = "application/problem+json"

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


def problem_body(status: int, code: str, detail: str, **extra: Any) -> dict[str, Any]:
    """An RFC 9457 problem object with the service's `code` member."""
    title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    body["code"] = code
    body.update(extra)
    return body


def problem_response(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    """A problem+json response."""
    return JSONResponse(
        problem_body(status, code, detail, **extra),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def error_response(exc: AppError) -> Response:
    """The problem+json response of a domain error."""
    return problem_response(exc.status, exc.code, exc.detail, exc.headers, **exc.extra)


def _app_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    log = logger.error if exc.status >= 500 else logger.warning
    log("%s %s -> %s: %s", request.method, request.url.path, exc.code, exc.detail)
    return error_response(exc)


def _validation_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    error = ValidationFailed.from_errors(exc.errors())
    logger.warning("%s %s -> validation_error: %s", request.method, request.url.path, error.extra["fields"])
    return error_response(error)


def allowed_methods(request: Request) -> str:
    """Every method of every route at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.router.routes):
        if route.methods and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods
    if "GET" in methods:
        methods.add("HEAD")  # `HeadMiddleware`
    return ", ".join(sorted(methods))


def _http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request) or headers.get("Allow", "")
    return problem_response(exc.status_code, code, str(exc.detail), headers)


def disconnected_response(method: str, path: str) -> Response:
    """The answer to a client that has hung up: nobody reads it, but logs, metrics and the
    history see what happened (an upload's temp file is already gone, queued work dropped)."""
    logger.info("%s %s -> client disconnected mid-request", method, path)
    return problem_response(400, "client_disconnected", "The client disconnected before the answer")


def _disconnect_handler(request: Request, exc: Exception) -> Response:
    return disconnected_response(request.method, request.url.path)


def _unhandled_handler(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    settings = getattr(request.app.state, "settings", None)
    hsts = (settings.hsts_seconds, settings.hsts_include_subdomains) if settings is not None else (0, False)
    return problem_response(500, "internal_error", "Internal server error", error_headers(*hsts))


_HANDLERS: tuple[tuple[type[Exception], Callable[[Request, Exception], Response]], ...] = (
    (AppError, _app_error_handler),
    (RequestValidationError, _validation_handler),
    (StarletteHTTPException, _http_exception_handler),
    (ClientDisconnect, _disconnect_handler),
    (Exception, _unhandled_handler),
)


def problem_for(request: Request, exc: Exception) -> Response:
    """The problem+json response of any exception (the same mapping the app's handlers use)."""
    if is_outage(exc):
        metrics.DEPENDENCY_ERRORS.labels("database", "request").inc()
        if not isinstance(exc, DatabaseUnavailable):
            exc = DatabaseUnavailable(f"The database connection was lost ({type(exc).__name__})")
    elif is_storage_full(exc):  # nothing of the request was kept: its temp files are gone
        metrics.DEPENDENCY_ERRORS.labels("storage", "full").inc()
        logger.error("%s %s -> storage full: %s", request.method, request.url.path, exc)
        exc = StorageFull()
    elif is_out_of_descriptors(exc):  # the connection caps should prevent it; not a 500 if not
        logger.error("%s %s -> out of file descriptors: %s", request.method, request.url.path, exc)
        exc = Overloaded("The service is at capacity (no file descriptor left); try again shortly")
    for kind, handler in _HANDLERS:
        if isinstance(exc, kind):
            return handler(request, exc)
    raise exc  # pragma: no cover (Exception matches everything)


def register_exception_handlers(app: FastAPI) -> None:
    """Install the one mapping from exceptions to problem+json responses.

    The handlers are coroutines: Starlette runs a plain function handler in its thread pool,
    a thread hop on every error response."""
    for kind, _ in _HANDLERS:
        app.add_exception_handler(kind, _async(kind))


def _async(kind: type[Exception]) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handle(request: Request, exc: Exception) -> Response:
        return problem_for(request, exc)

    handle.__name__ = f"handle_{kind.__name__}"
    return handle
