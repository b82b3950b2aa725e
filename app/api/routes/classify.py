"""Seed 000 `POST /v1/classify`: classify an uploaded file (multipart `file`) or an image
fetched from a URL (JSON `{"url": ...}`); the image is stored like an upload and the
result cached like any analysis."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field, TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from app.api.calls import Call
from app.api.routing import (
    Described,
    Policy,
    Reply,
    body_stream,
    content_length,
    json_schema,
    lean_route,
    multipart_body,
    read_body,
    streamed,
    until_disconnected,
)
from app.composition import ServiceContainer
from app.core.errors import AppError, ValidationFailed
from app.schemas.classify import ClassifyUrlRequest
from app.schemas.problems import UNAUTHORIZED, problem_docs
from app.services.accounts.principals import Principal

router = APIRouter(tags=["seed 000"])

CLASSIFY_BODY = multipart_body({"file": {"type": "string", "format": "binary"}}, required=["file"])
CLASSIFY_BODY["content"]["application/json"] = {"schema": json_schema(ClassifyUrlRequest)}

CLASSIFY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Top-k ImageNet classes; the image is stored (`image_id`) and the result cached",
        "content": {"application/json": {"schema": {"type": "object", "additionalProperties": True}}},
    },
    **problem_docs(
        (400, "unsupported_media_type", "The file is not a supported image (HEIC, JPEG, PNG, WEBP)"),
        (400, "url_not_allowed", "The URL's host resolves to a private-network address"),
        (400, "url_fetch_failed", "The server answered 404"),
        (400, "unknown_model", "Unknown model 'x'; available: default, lite2"),
        UNAUTHORIZED,
        (402, "insufficient_credits", "No credits left: ask an admin for a refill (POST /v1/refill)"),
        (413, "url_too_large", "The resource at the URL is larger than 5242880 bytes"),
        (503, "analyzer_unavailable", "Analyzer 'classify' is not loaded"),
        (503, "model_unavailable", "Model 'lite2' of classify is not loaded: ... does not fit: ..."),
        (503, "queue_full", "Too many classify analyses are waiting (64); try again later"),
    ),
}


TopK = Annotated[int, Query(ge=1, le=1000, description="With a multipart upload: how many classes")]
_TOP_K = TypeAdapter(Annotated[int, Field(ge=1, le=1000)])
ModelName = Annotated[
    str | None, Query(max_length=64, description="With a multipart upload: a model named in MODELS")
]
_MODEL = TypeAdapter(Annotated[str, Field(max_length=64)])


def _described(request: Request) -> Described:
    """A failed request in the history: a URL (JSON) or an upload of its declared size."""
    if request.headers.get("content-type", "").lower().startswith("application/json"):
        return Described("url")
    return Described("image", content_length(request))


def _query(request: Request, name: str, adapter: TypeAdapter[Any], default: Any) -> Any:
    """A query parameter checked by `adapter` (`default` when absent); a 400
    validation_error as FastAPI's."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        return adapter.validate_python(raw, strict=False)
    except ValidationError as exc:
        errors = [{**e, "loc": ("query", name, *e["loc"])} for e in exc.errors(include_url=False)]
        raise ValidationFailed.from_errors(errors) from None


@lean_route(
    router,
    [("/v1/classify", "Classify an image file or URL (seed 000)", "classify_v1")],
    policy=Policy(authenticate=True, rate_limit="analyze", body_limit=streamed, history=_described),
    query={"top_k": (TopK, 5), "model": (ModelName, None)},
    responses=CLASSIFY_RESPONSES,
    openapi_extra={"requestBody": CLASSIFY_BODY},
)
async def classify(call: Call) -> Reply:
    """Classify an image with the default model (EfficientNet-Lite0, ImageNet-1k, unless
    MODEL_PATH names another): multipart `file`, or JSON
    `{"url": "https://…", "top_k": 5}` fetched safely (public addresses only, ≤ 3 redirects,
    size-limited). `model` (query, or in the JSON) picks a classifier named in MODELS. The image
    is stored like an upload; the result is cached per image. If the classification fails, the
    image is removed again (the client never learned its id)."""
    top_k: int = _query(call.request, "top_k", _TOP_K, 5)
    model: str | None = _query(call.request, "model", _MODEL, None)
    container = call.services
    principal = await call.caller()
    # 503 before anything is stored if the model is not loaded (400 if there is no such model)
    container.analysis.parse_params(container.registry.get("classify"), _model(model))
    # A classification that could not run soon is refused before its upload is read (503 +
    # Retry-After): an upload is never a cache hit, the image would only be stored to be deleted.
    # Admitted, it holds a place in the queue while its body is read.
    with container.analysis.reserve("classify"):
        return await _classify(call.request, container, principal, top_k, model)


async def _classify(
    request: Request, container: ServiceContainer, principal: Principal, top_k: int, model: str | None
) -> Reply:
    await container.credits.check(principal)
    content_type = request.headers.get("content-type", "")
    if content_type.lower().startswith("application/json"):
        raw = await read_body(request, container.settings.max_json_body_bytes)
        try:
            body = ClassifyUrlRequest.model_validate_json(raw)
        except ValidationError as exc:
            raise ValidationFailed.from_errors(exc.errors(include_url=False)) from None
        top_k, model = body.top_k, body.model
        container.analysis.parse_params(container.registry.get("classify"), _model(model))
        request_type = "url"
        outcome = await container.ingest.ingest_url(body.url, principal)
    else:
        request_type = "image"
        outcome = await container.ingest.upload(
            content_type=content_type,
            content_length=content_length(request),
            chunks=body_stream(request),
            owner=principal,
        )
    meta = outcome.metadata
    described = Described(request_type, meta.size_bytes, meta.width, meta.height)
    params: dict[str, Any] = {"top_k": top_k, **(_model(model) or {})}
    try:
        result = await until_disconnected(
            request, container.analysis.analyze(outcome.image_id, principal, "classify", params)
        )
    except Exception:
        # The client never learns the id of an image whose classification failed: remove it.
        with contextlib.suppress(AppError):
            await container.images.delete(outcome.image_id, principal)
        raise
    response = Response(
        result.body,
        200,
        {"X-Cache": "REUSED" if result.reused else "HIT" if result.cached else "MISS"},
        "application/json",
    )
    return Reply(response, described)


def _model(model: str | None) -> dict[str, Any] | None:
    """The params that pick `model` (None: the default model's, no params)."""
    return None if model is None else {"model": model}
