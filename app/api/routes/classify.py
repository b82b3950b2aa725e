"""Seed 000 `POST /v1/classify`: classify an uploaded file (multipart `file`) or an image
fetched from a URL (JSON `{"url": ...}`), through the same upload and analysis services."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import FastAPI, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import Receive, Scope, Send

from app.api.deps import PrincipalDep
from app.api.lean import (
    add_lean_routes,
    body_chunks,
    content_length,
    header,
    multipart_body,
    principal_of,
    read_body,
    send_bytes,
    services_of,
)
from app.core.errors import ValidationFailed
from app.schemas.problems import UNAUTHORIZED, problem_docs
from app.services.fetch import UrlPolicy, download
from app.services.multipart import sanitize_filename
from app.services.state import Services
from app.storage.atomic import unlink_quietly


class ClassifyUrlRequest(BaseModel):
    """Classify the image at a public http(s) URL."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048, examples=["https://example.com/cat.jpg"])
    top_k: int = Field(default=5, ge=1, le=1000)


CLASSIFY_OPENAPI = multipart_body(
    {"file": {"type": "string", "format": "binary"}},
    required=["file"],
    **{"application/json": ClassifyUrlRequest.model_json_schema()},
)

CLASSIFY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Top-k ImageNet classes; the image is stored (`image_id`) and the result cached"},
    **problem_docs(
        (400, "unsupported_media_type", "The file is not a supported image (HEIC, JPEG, PNG, WEBP)"),
        (400, "url_not_allowed", "The URL's host resolves to a private-network address"),
        (400, "url_fetch_failed", "The server answered 404"),
        UNAUTHORIZED,
        (413, "url_too_large", "The resource at the URL is larger than 5242880 bytes"),
        (503, "analyzer_unavailable", "Analyzer 'classify' is not loaded"),
    ),
}


def url_policy(services: Services) -> UrlPolicy:
    """The fetch policy from settings (the size limit is the upload limit)."""
    settings = services.settings
    return UrlPolicy(
        max_redirects=settings.url_fetch_max_redirects,
        connect_timeout=settings.url_fetch_connect_timeout,
        read_timeout=settings.url_fetch_read_timeout,
        total_timeout=settings.url_fetch_total_timeout,
        max_bytes=settings.max_upload_bytes,
        allow_loopback=settings.url_fetch_allow_loopback,
    )


def _top_k(scope: Scope) -> int:
    for key, value in parse_qsl(scope["query_string"].decode("latin-1")):
        if key == "top_k":
            if not (value.isascii() and value.isdigit() and 1 <= int(value) <= 1000):
                raise ValidationFailed("Invalid request: top_k: must be an integer from 1 to 1000")
            return int(value)
    return 5


async def classify_handler(scope: Scope, receive: Receive, send: Send) -> None:
    """Serve /v1/classify: store the image (upload or download), then the cached analysis."""
    services = services_of(scope)
    principal = principal_of(scope, services)
    content_type = header(scope, b"content-type") or ""
    if content_type.lower().startswith("application/json"):
        try:
            body = await read_body(receive, services.settings.max_json_body_bytes)
            request = ClassifyUrlRequest.model_validate_json(body)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_url=False)) from None
        top_k = request.top_k
        dest = services.images.images.temp_path()
        try:
            await download(request.url, dest, url_policy(services))
            name = sanitize_filename(urlsplit(request.url).path.rsplit("/", 1)[-1] or None)
            outcome = await services.images.ingest_file(dest, name)
        finally:
            unlink_quietly(dest)  # published images were renamed away; anything else goes
    else:
        top_k = _top_k(scope)
        outcome = await services.images.upload(
            content_type=content_type,
            content_length=content_length(scope),
            chunks=body_chunks(receive),
            scope=principal,
        )
    result = await services.analysis.analyze(outcome.image_id, "classify", {"top_k": top_k})
    await send_bytes(send, 200, result.body, [(b"x-cache", b"HIT" if result.cached else b"MISS")])


async def classify(
    _: PrincipalDep,
    top_k: int = Query(5, ge=1, le=1000, description="With a multipart upload: how many classes"),
) -> dict[str, Any]:
    """Classify an image with EfficientNet-Lite0 (ImageNet-1k): multipart `file`, or JSON
    `{"url": "https://…", "top_k": 5}` fetched safely (public addresses only, ≤ 3 redirects,
    size-limited). The image is stored like an upload; the result is cached per image."""
    # Documentation only: LeanRoute serves this operation with `classify_handler`.
    raise AssertionError("served by classify_handler")


def install_classify_routes(app: FastAPI) -> None:
    """Add seed 000's /v1/classify."""
    add_lean_routes(
        app,
        [("/v1/classify", "Classify an image file or URL (seed 000)", "classify_v1")],
        classify,
        classify_handler,
        methods=["POST"],
        tags=["seed 000"],
        responses=CLASSIFY_RESPONSES,
        openapi_extra=CLASSIFY_OPENAPI,
    )
