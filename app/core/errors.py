"""Domain errors and their one mapping to HTTP (RFC 9457 problem+json).

The tree::

    AppError                      500 internal_error
    ├── BadRequest                400 bad_request
    │   ├── ValidationFailed      400 validation_error
    │   ├── InvalidImageId        400 invalid_image_id
    │   ├── MalformedMultipart    400 malformed_multipart
    │   ├── MissingFile           400 missing_file
    │   ├── TooManyFiles          400 too_many_files
    │   ├── EmptyFile             400 empty_file
    │   ├── UnsupportedMediaType  400 unsupported_media_type
    │   ├── UndecodableImage      400 undecodable_image
    │   ├── TooManyPixels         400 image_too_large
    │   ├── UnknownAnalyzer       400 unknown_analyzer
    │   ├── InvalidBase64         400 invalid_base64
    │   ├── InvalidLandmarks      400 invalid_landmarks
    │   └── InvalidSegmentation   400 invalid_segmentation_map
    ├── Unauthorized              401 unauthorized
    ├── ModelFailed               403 model_failed (seed 003's text)
    ├── NotFound                  404 not_found
    │   └── ImageNotFound         404 image_not_found
    ├── IdempotencyConflict       409 idempotency_key_in_use
    ├── PayloadTooLarge           413 payload_too_large
    ├── IdempotencyMismatch       422 idempotency_key_reused
    ├── Unprocessable             422 unprocessable
    │   ├── NoFaceDetected        422 no_face_detected
    │   └── FaceTooSmall          422 face_too_small
    └── ServiceUnavailable        503 service_unavailable
        └── AnalyzerUnavailable   503 analyzer_unavailable

Services raise these; `register_exception_handlers` turns them (and FastAPI's own
validation and routing errors) into problem+json bodies with `detail` and `code`.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response

logger = logging.getLogger("app.errors")

PROBLEM_MEDIA_TYPE = "application/problem+json"


class AppError(Exception):
    """Base of every error the service reports to clients."""

    status: int = 500
    code: str = "internal_error"
    default_detail: str = "Internal server error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.detail = detail or self.default_detail
        self.extra = extra or {}
        self.headers = headers or {}
        super().__init__(self.detail)


class BadRequest(AppError):
    status, code, default_detail = 400, "bad_request", "Bad request"


class ValidationFailed(BadRequest):
    code, default_detail = "validation_error", "The request is invalid"


class InvalidImageId(BadRequest):
    code, default_detail = "invalid_image_id", "image_id must be a UUID version 4"


class MalformedMultipart(BadRequest):
    code, default_detail = "malformed_multipart", "The body is not valid multipart/form-data"


class MissingFile(BadRequest):
    code, default_detail = "missing_file", "The form has no file part"


class TooManyFiles(BadRequest):
    code, default_detail = "too_many_files", "Exactly one file part is allowed"


class EmptyFile(BadRequest):
    code, default_detail = "empty_file", "The uploaded file is empty"


class UnsupportedMediaType(BadRequest):
    code, default_detail = "unsupported_media_type", "The file is not a supported image type"


class UndecodableImage(BadRequest):
    code, default_detail = "undecodable_image", "The image cannot be decoded"


class TooManyPixels(BadRequest):
    code, default_detail = "image_too_large", "The image has too many pixels"


class UnknownAnalyzer(BadRequest):
    code, default_detail = "unknown_analyzer", "Unknown analyzer"


class InvalidBase64(BadRequest):
    code, default_detail = "invalid_base64", "The field is not valid base64 (or a base64 data URL)"


class InvalidLandmarks(BadRequest):
    code, default_detail = "invalid_landmarks", "Landmarks must be 68 points with finite x and y"


class InvalidSegmentation(BadRequest):
    code, default_detail = (
        "invalid_segmentation_map",
        "The segmentation map is not a label image of the same size",
    )


class Unauthorized(AppError):
    status, code, default_detail = 401, "unauthorized", "A valid X-API-KEY header is required"


class ModelFailed(AppError):
    status, code, default_detail = 403, "model_failed", "модель не смогла обработать данные"


class NotFound(AppError):
    status, code, default_detail = 404, "not_found", "Not found"


class ImageNotFound(NotFound):
    code, default_detail = "image_not_found", "Image not found"


class IdempotencyConflict(AppError):
    status, code = 409, "idempotency_key_in_use"
    default_detail = "A request with this Idempotency-Key is still being processed"


class PayloadTooLarge(AppError):
    status, code, default_detail = 413, "payload_too_large", "The upload is too large"


class IdempotencyMismatch(AppError):
    status, code = 422, "idempotency_key_reused"
    default_detail = "This Idempotency-Key was used with a different request body"


class Unprocessable(AppError):
    status, code, default_detail = 422, "unprocessable", "The image cannot be analyzed"


class NoFaceDetected(Unprocessable):
    code, default_detail = "no_face_detected", "No face was detected in the image"


class FaceTooSmall(Unprocessable):
    code, default_detail = "face_too_small", "The face is too small to analyze"


class ServiceUnavailable(AppError):
    status, code, default_detail = 503, "service_unavailable", "The service is not ready"


class AnalyzerUnavailable(ServiceUnavailable):
    code, default_detail = "analyzer_unavailable", "The analyzer is not loaded"


def problem_body(status: int, code: str, detail: str, **extra: Any) -> dict[str, Any]:
    """An RFC 9457 problem object with the service's `code` member."""
    title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update(extra)
    return body


def problem_response(
    status: int,
    code: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """A problem+json response."""
    return JSONResponse(
        problem_body(status, code, detail, **extra),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def _app_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    if exc.status >= 500:
        logger.error("%s %s -> %s: %s", request.method, request.url.path, exc.code, exc.detail)
    else:
        logger.warning("%s %s -> %s: %s", request.method, request.url.path, exc.code, exc.detail)
    return problem_response(exc.status, exc.code, exc.detail, exc.headers, **exc.extra)


def _loc_text(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _validation_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"field": _loc_text(err.get("loc", ())), "message": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]
    fields = sorted({e["field"] for e in errors})
    detail = "Invalid request: " + "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    logger.warning("%s %s -> validation_error: %s", request.method, request.url.path, fields)
    return problem_response(400, "validation_error", detail, fields=fields, errors=errors)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}


def _http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return problem_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))


def _disconnect_handler(request: Request, exc: Exception) -> Response:
    # Nobody is listening any more; the upload's temp file is already gone.
    logger.info("%s %s -> client disconnected mid-request", request.method, request.url.path)
    return problem_response(
        400, "client_disconnected", "The client disconnected before the body was complete"
    )


def _unhandled_handler(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(500, "internal_error", "Internal server error")


def register_exception_handlers(app: FastAPI) -> None:
    """Install the one mapping from exceptions to problem+json responses."""
    app.add_exception_handler(AppError, _app_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)
    app.add_exception_handler(ClientDisconnect, _disconnect_handler)
    app.add_exception_handler(Exception, _unhandled_handler)
