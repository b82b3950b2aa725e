"""Seed 000 `POST /v1/classify`: classify an uploaded file (multipart `file`) or an image
fetched from a URL (JSON `{"url": ...}`); the image is stored like an upload and the
result cached like any analysis."""

from __future__ import annotations

from functools import partial
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
from app.core.errors import ValidationFailed
from app.schemas.classify import ClassifyUrlRequest
from app.schemas.problems import UNAUTHORIZED, problem_docs
from app.services.analysis.classify import ClassifyImages, ClassifyInput, UploadedImage, UrlImage

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
async def classify(call: Call, classifier: ClassifyImages) -> Reply:
    """Classify an image with the default model (EfficientNet-Lite0, ImageNet-1k, unless
    MODEL_PATH names another): multipart `file`, or JSON
    `{"url": "https://…", "top_k": 5}` fetched safely (public addresses only, ≤ 3 redirects,
    size-limited). `model` (query, or in the JSON) picks a classifier named in MODELS. The image
    is stored like an upload; the result is cached per image. If the classification fails, the
    image is removed again (the client never learned its id)."""
    request = call.request
    top_k: int = _query(request, "top_k", _TOP_K, 5)
    model: str | None = _query(request, "model", _MODEL, None)

    async def receive() -> ClassifyInput:
        content_type = request.headers.get("content-type", "")
        if not content_type.lower().startswith("application/json"):
            return UploadedImage(content_type, content_length(request), body_stream(request), top_k, model)
        raw = await read_body(request, classifier.max_json_bytes)
        try:
            body = ClassifyUrlRequest.model_validate_json(raw)
        except ValidationError as exc:
            raise ValidationFailed.from_errors(exc.errors(include_url=False)) from None
        return UrlImage(body.url, body.top_k, body.model)

    done = await classifier.classify(
        await call.caller(), model, receive, partial(until_disconnected, request)
    )
    meta = done.metadata
    outcome = done.outcome
    cache = "REUSED" if outcome.reused else "HIT" if outcome.cached else "MISS"
    response = Response(outcome.body, 200, {"X-Cache": cache}, "application/json")
    return Reply(response, Described(done.source, meta.size_bytes, meta.width, meta.height))
