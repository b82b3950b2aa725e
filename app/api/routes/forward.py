"""Seed 003 `POST /forward`: an image (multipart `image`) through the classifier, or JSON
text (form field `data`) echoed back, with the seed's exact error texts."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from app.api.deps import PrincipalDep
from app.api.lean import (
    add_lean_routes,
    body_chunks,
    content_length,
    header,
    multipart_body,
    principal_of,
    send_bytes,
    services_of,
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

BAD_REQUEST = "bad request"
TOP_K = 5

# What the model cannot process answers 403 with the seed's text; a malformed form is 400.
_MODEL_FAILURES = (EmptyFile, UnsupportedMediaType, UndecodableImage, TooManyPixels)

FORWARD_OPENAPI = multipart_body(
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
                }
            }
        },
    },
    **problem_docs(
        (400, "bad_request", BAD_REQUEST),
        (403, "model_failed", "модель не смогла обработать данные"),
        (413, "payload_too_large", "The file exceeds the limit of 5242880 bytes"),
    ),
}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_data(text: str) -> Any:
    """The `data` field as JSON; 400 for anything that is not strict JSON (NaN, too deep...)."""
    try:
        data = json.loads(text, parse_constant=_reject_constant)
        _encode(data)  # lone surrogates parse but cannot be sent back as UTF-8
    except (ValueError, RecursionError, UnicodeError):
        raise BadRequest(BAD_REQUEST) from None
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


async def forward_handler(scope: Scope, receive: Receive, send: Send) -> None:
    """Serve /forward: classify `image`, else process `data`, else 400."""
    services = services_of(scope)
    principal_of(scope, services)
    try:
        form = await services.images.receive(
            content_type=header(scope, b"content-type"),
            content_length=content_length(scope),
            chunks=body_chunks(receive),
            file_field="image",
        )
    except (MalformedMultipart, MissingFile, TooManyFiles):
        raise BadRequest(BAD_REQUEST) from None
    except _MODEL_FAILURES:
        raise ModelFailed() from None
    received = form.file
    try:
        if received is not None:
            try:
                await services.images.check(received)
                result = await services.analysis.run_unstored(received.path, "classify", {"top_k": TOP_K})
            except _MODEL_FAILURES:
                raise ModelFailed() from None
            body = _classification(result.predictions)  # type: ignore[attr-defined]
        elif "data" in form.fields:
            body = {
                "result": {
                    "message": "JSON data processed",
                    "received_data": _parse_data(form.fields["data"]),
                }
            }
        else:
            raise BadRequest(BAD_REQUEST)
    finally:
        services.images.discard(received)
    await send_bytes(send, 200, _encode(body))


async def forward(_: PrincipalDep) -> dict[str, Any]:
    """Run an image through the ImageNet classifier (multipart `image`), or process JSON text
    (form field `data`). Neither, or invalid JSON: 400 `{"detail": "bad request"}`; an image
    the model cannot process: 403."""
    # Documentation only: LeanRoute serves this operation with `forward_handler`.
    raise AssertionError("served by forward_handler")


def install_forward_routes(app: FastAPI) -> None:
    """Add seed 003's /forward."""
    add_lean_routes(
        app,
        [("/forward", "Classify an image or process JSON data (seed 003)", "forward")],
        forward,
        forward_handler,
        methods=["POST"],
        tags=["seed 003"],
        responses=FORWARD_RESPONSES,
        openapi_extra=FORWARD_OPENAPI,
    )
