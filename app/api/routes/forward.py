"""Seed 003 `POST /forward`: an image (multipart `image`) through the classifier, or JSON
text (form field `data`) echoed back, with the seed's exact error texts."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from app.api.calls import Call
from app.api.routing import (
    Described,
    Policy,
    Reply,
    body_stream,
    content_length,
    lean_route,
    multipart_body,
    streamed,
)
from app.core.errors import (
    BadRequest,
    EmptyFile,
    MalformedMultipart,
    MissingFile,
    ModelFailed,
    TooManyFiles,
    TooManyPixels,
    UndecodableImage,
    UnsupportedMediaType,
)
from app.schemas.problems import problem_docs
from app.services.analysis.forms import FormClassifier

router = APIRouter(tags=["seed 003"])

BAD_REQUEST = "bad request"
TOP_K = 5

# What the model cannot process answers 403 with the seed's text; a malformed form is 400.
_MODEL_FAILURES = (EmptyFile, UnsupportedMediaType, UndecodableImage, TooManyPixels)

FORWARD_BODY = multipart_body(
    {
        "image": {"type": "string", "format": "binary", "description": "An image to classify"},
        "data": {"type": "string", "description": "A JSON text to process (when no image)"},
    },
    required=[],
)

FORWARD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Classification (image) or the processed JSON (data)",
        "content": {
            "application/json": {
                "schema": {"type": "object", "additionalProperties": True},
                "examples": {
                    "image": {
                        "value": {
                            "result": {
                                "predictions": [{"class": "tabby, tabby cat", "probability": 0.5231}],
                                "top_class": "tabby, tabby cat",
                                "top_probability": 0.5231,
                            }
                        }
                    },
                    "data": {
                        "value": {
                            "result": {
                                "message": "JSON data processed",
                                "received_data": {"text": "sample data", "value": 123},
                            }
                        }
                    },
                },
            }
        },
    },
    **problem_docs(
        (400, "bad_request", BAD_REQUEST),
        (403, "model_failed", "модель не смогла обработать данные"),
        (413, "payload_too_large", "The file exceeds the limit of 5242880 bytes"),
        (503, "queue_full", "Too many classify analyses are waiting (64); try again later"),
    ),
}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_data(text: str) -> dict[str, Any]:
    """The `data` field as a JSON object; 400 for anything else (an array, a string, not strict
    JSON: NaN, too deep...), whatever else the form holds."""
    try:
        data = json.loads(text, parse_constant=_reject_constant)
        _encode(data)  # lone surrogates parse but cannot be sent back as UTF-8
    except (ValueError, RecursionError, UnicodeError):
        raise BadRequest(BAD_REQUEST) from None
    if not isinstance(data, dict):
        raise BadRequest(BAD_REQUEST)
    return data


def _encode(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def _classification(predictions: list[Any]) -> dict[str, Any]:
    rows = [{"class": p.label, "probability": round(p.probability, 4)} for p in predictions]
    return {
        "result": {
            "predictions": rows,
            "top_class": rows[0]["class"],
            "top_probability": rows[0]["probability"],
        }
    }


def _described(request: Request) -> Described:
    """A failed request in the history: a form of its declared size."""
    return Described("image", content_length(request))


@lean_route(
    router,
    [("/forward", "Classify an image or process JSON data (seed 003)", "forward")],
    policy=Policy(authenticate=True, rate_limit="analyze", body_limit=streamed, history=_described),
    responses=FORWARD_RESPONSES,
    openapi_extra={"requestBody": FORWARD_BODY},
)
async def forward(call: Call, forms: FormClassifier) -> Reply:
    """Run an image through the ImageNet classifier (multipart `image`), or process JSON text
    (form field `data`, a JSON object). Neither, or a `data` that is not a JSON object (with
    or without an image): 400 `{"detail": "bad request"}`; an image the model cannot process:
    403; an image the classifier could not take soon: 503 before the image is read."""
    request = call.request
    principal = await call.caller()
    size = content_length(request)
    try:
        outcome = await forms.process(
            content_type=request.headers.get("content-type"),
            content_length=size,
            chunks=body_stream(request),
            file_field="image",
            text_field="data",
            analyzer="classify",
            params={"top_k": TOP_K},
            caller=principal,
            check_text=_parse_data,  # a malformed `data` is a 400 even beside an image
        )
    except (MalformedMultipart, MissingFile, TooManyFiles):
        raise BadRequest(BAD_REQUEST) from None
    except _MODEL_FAILURES:
        raise ModelFailed() from None
    if outcome.result is not None:
        body = _classification(outcome.result.predictions)  # type: ignore[attr-defined]
        width, height = outcome.size if outcome.size is not None else (None, None)
        described = Described("image", size, width, height)
    elif outcome.text is not None:
        body = {"result": {"message": "JSON data processed", "received_data": _parse_data(outcome.text)}}
        described = Described("json", size)
    else:
        raise BadRequest(BAD_REQUEST)
    return Reply(Response(_encode(body), 200, media_type="application/json"), described)
