"""Domain errors: every error the service reports to a client, as one tree.

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
    │   │   └── TrailingData      400 trailing_data
    │   ├── TooManyPixels         400 image_too_large
    │   ├── UnknownAnalyzer       400 unknown_analyzer
    │   ├── UnknownModel          400 unknown_model
    │   ├── InvalidBase64         400 invalid_base64
    │   ├── InvalidLandmarks      400 invalid_landmarks
    │   ├── InvalidSegmentation   400 invalid_segmentation_map
    │   ├── UrlNotAllowed         400 url_not_allowed
    │   └── UrlFetchFailed        400 url_fetch_failed
    ├── Unauthorized              401 unauthorized
    ├── InsufficientCredits       402 insufficient_credits
    ├── Forbidden                 403 forbidden
    │   └── CallbackNeedsCredentials 403 callback_needs_credentials
    ├── ModelFailed               403 model_failed (seed 003's text)
    ├── NotFound                  404 not_found
    │   ├── ImageNotFound         404 image_not_found
    │   ├── JobNotFound           404 job_not_found
    │   └── UserNotFound          404 user_not_found
    ├── RequestTimeout            408 request_timeout
    ├── IdempotencyConflict       409 idempotency_key_in_use
    ├── UsernameTaken             409 username_taken
    ├── PayloadTooLarge           413 payload_too_large
    │   └── UrlTooLarge           413 url_too_large
    ├── RangeNotSatisfiable       416 range_not_satisfiable
    ├── IdempotencyMismatch       422 idempotency_key_reused
    ├── Unprocessable             422 unprocessable
    │   ├── NoFaceDetected        422 no_face_detected
    │   ├── FaceTooSmall          422 face_too_small
    │   ├── FaceOutOfFrame        422 face_out_of_frame
    │   ├── HeadTurned            422 head_turned
    │   ├── ImageBlurred          422 image_blurred
    │   ├── ImageTooDark          422 image_too_dark
    │   ├── ImageOverexposed      422 image_overexposed
    │   └── MultipleFaces         422 multiple_faces
    ├── TooManyRequests           429 too_many_requests
    └── ServiceUnavailable        503 service_unavailable
        ├── AnalyzerUnavailable   503 analyzer_unavailable
        │   └── ModelUnavailable  503 model_unavailable
        ├── QueueFull             503 queue_full
        ├── Overloaded            503 overloaded (with Retry-After)
        └── DependencyUnavailable 503 dependency_unavailable (with Retry-After)
            ├── DatabaseUnavailable    503 database_unavailable
            ├── RateLimiterUnavailable 503 rate_limiter_unavailable
            ├── StorageUnavailable     503 storage_unavailable
            └── StorageFull            503 storage_full

Services raise these; the API layer (`app.api.problems`) maps them, in one place, to
RFC 9457 problem+json bodies with `detail` and `code` (tests/core/test_errors.py checks this tree).
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any


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

    @classmethod
    def from_errors(
        cls, errors: Iterable[Mapping[str, Any]], prefix: str = "", lead: str = "Invalid request"
    ) -> ValidationFailed:
        """One error for a list of pydantic-style errors (`loc`, `msg`, `type`): the detail
        names every bad field; `fields` and `errors` list them for programs."""
        rows = [
            {
                "field": prefix + _field_name(err.get("loc", ())),
                "message": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
            for err in errors
        ]
        detail = f"{lead}: " + "; ".join(f"{r['field']}: {r['message']}" for r in rows)
        return cls(detail, extra={"fields": sorted({r["field"] for r in rows}), "errors": rows})


def _field_name(loc: Iterable[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


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


class TrailingData(UndecodableImage):
    """More undeclared bytes after a JPEG's end than `JPEG_MAX_TRAILING_BYTES`."""

    code, default_detail = "trailing_data", "The image has undeclared data after its end"


class TooManyPixels(BadRequest):
    code, default_detail = "image_too_large", "The image has too many pixels"


class UnknownAnalyzer(BadRequest):
    code, default_detail = "unknown_analyzer", "Unknown analyzer"


class UnknownModel(BadRequest):
    code, default_detail = "unknown_model", "Unknown model"


class InvalidBase64(BadRequest):
    code, default_detail = "invalid_base64", "The field is not valid base64 (or a base64 data URL)"


class InvalidLandmarks(BadRequest):
    code, default_detail = "invalid_landmarks", "Landmarks must be 68 points with finite x and y"


class InvalidSegmentation(BadRequest):
    code, default_detail = (
        "invalid_segmentation_map",
        "The segmentation map is not a label image of the same size",
    )


class UrlNotAllowed(BadRequest):
    code, default_detail = "url_not_allowed", "The URL is not allowed"


class UrlFetchFailed(BadRequest):
    code, default_detail = "url_fetch_failed", "The URL could not be downloaded"


class Unauthorized(AppError):
    status, code, default_detail = 401, "unauthorized", "A valid X-API-KEY header is required"


class InsufficientCredits(AppError):
    status, code, default_detail = 402, "insufficient_credits", "Not enough credits for this analysis"


class Forbidden(AppError):
    status, code, default_detail = 403, "forbidden", "This needs an admin"


class ModelFailed(AppError):
    status, code, default_detail = 403, "model_failed", "модель не смогла обработать данные"


class NotFound(AppError):
    status, code, default_detail = 404, "not_found", "Not found"


class ImageNotFound(NotFound):
    code, default_detail = "image_not_found", "Image not found"


class JobNotFound(NotFound):
    code, default_detail = "job_not_found", "Job not found"


class UserNotFound(NotFound):
    code, default_detail = "user_not_found", "User not found"


class RequestTimeout(AppError):
    status, code, default_detail = 408, "request_timeout", "The request body stalled"


class IdempotencyConflict(AppError):
    status, code = 409, "idempotency_key_in_use"
    default_detail = "A request with this Idempotency-Key is still being processed"


class UsernameTaken(AppError):
    status, code, default_detail = 409, "username_taken", "This username is already registered"


class PayloadTooLarge(AppError):
    status, code, default_detail = 413, "payload_too_large", "The upload is too large"


class UrlTooLarge(PayloadTooLarge):
    code, default_detail = "url_too_large", "The resource at the URL is too large"


class RangeNotSatisfiable(AppError):
    status, code, default_detail = 416, "range_not_satisfiable", "The range starts past the end of the file"


class IdempotencyMismatch(AppError):
    status, code = 422, "idempotency_key_reused"
    default_detail = "This Idempotency-Key was used with a different request body"


class Unprocessable(AppError):
    status, code, default_detail = 422, "unprocessable", "The image cannot be analyzed"


class NoFaceDetected(Unprocessable):
    code, default_detail = "no_face_detected", "No face was detected in the image"


class FaceTooSmall(Unprocessable):
    code, default_detail = "face_too_small", "The face is too small to analyze"


class FaceOutOfFrame(Unprocessable):
    code, default_detail = "face_out_of_frame", "Part of the face is outside the image"


class HeadTurned(Unprocessable):
    code, default_detail = "head_turned", "The head is turned too far from the camera"


class ImageBlurred(Unprocessable):
    code, default_detail = "image_blurred", "The face is too blurred to analyze"


class ImageTooDark(Unprocessable):
    code, default_detail = "image_too_dark", "The face is too dark to analyze"


class ImageOverexposed(Unprocessable):
    code, default_detail = "image_overexposed", "The face is overexposed"


class MultipleFaces(Unprocessable):
    code, default_detail = "multiple_faces", "More than one face is in the image"


class TooManyRequests(AppError):
    status, code, default_detail = 429, "too_many_requests", "Too many requests; try again later"


class ServiceUnavailable(AppError):
    status, code, default_detail = 503, "service_unavailable", "The service is not ready"


class AnalyzerUnavailable(ServiceUnavailable):
    code, default_detail = "analyzer_unavailable", "The analyzer is not loaded"


class ModelUnavailable(AnalyzerUnavailable):
    code, default_detail = "model_unavailable", "The model is not loaded"


class QueueFull(ServiceUnavailable):
    code, default_detail = "queue_full", "Too many jobs are waiting; try again later"


class Overloaded(ServiceUnavailable):
    code, default_detail = "overloaded", "The service is at capacity; try again shortly"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"Retry-After": "1"})


class DependencyUnavailable(ServiceUnavailable):
    code, default_detail = "dependency_unavailable", "A dependency is unavailable; try again later"
    retry_after = 5  # seconds: about what a restart or fail-over of the dependency takes

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail, headers={"Retry-After": str(self.retry_after), **(headers or {})})


class DatabaseUnavailable(DependencyUnavailable):
    code, default_detail = "database_unavailable", "The database is unavailable; try again later"


class RateLimiterUnavailable(DependencyUnavailable):
    code, default_detail = "rate_limiter_unavailable", "The rate limiter is unavailable; try again later"


class StorageUnavailable(DependencyUnavailable):
    code, default_detail = "storage_unavailable", "The object storage cannot be reached; try again later"


class StorageFull(DependencyUnavailable):
    code, default_detail = "storage_full", "The service's storage is full; try again later"
    retry_after = 60  # space comes back when an operator frees some, not in seconds


# A write refused for want of space: the file system or the quota is full, or the file would
# pass the process's file size limit (RLIMIT_FSIZE); SQLite says SQLITE_FULL instead,
# PostgreSQL SQLSTATE 53100 (disk_full; asyncpg and psycopg both name it `sqlstate`)
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_NO_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE})  # the process's or the system's table
_PG_DISK_FULL = "53100"


def is_out_of_descriptors(exc: BaseException) -> bool:
    """Whether `exc` is a file or socket that could not be opened: no file descriptor left."""
    return isinstance(exc, OSError) and exc.errno in _NO_DESCRIPTORS


def is_storage_full(exc: BaseException) -> bool:
    """Whether `exc` (or the driver error it wraps) is a write refused because the storage is full."""
    orig = getattr(exc, "orig", None)  # SQLAlchemy wraps the driver's error
    if isinstance(orig, BaseException):
        exc = orig
    if isinstance(exc, OSError):
        return exc.errno in _FULL_ERRNOS
    return (
        getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
        or getattr(exc, "sqlstate", None) == _PG_DISK_FULL
    )


class CallbackNeedsCredentials(Forbidden):
    code, default_detail = (
        "callback_needs_credentials",
        "Webhooks need an API key or a user token: anonymous callers cannot have a signing secret",
    )
