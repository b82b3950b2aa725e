"""The problem+json error body (RFC 9457) and OpenAPI response docs built from it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Problem(BaseModel):
    """An error: RFC 9457 members plus the FastAPI-compatible `detail` and a stable `code`."""

    type: str = Field(default="about:blank", examples=["about:blank"])
    title: str = Field(examples=["Bad Request"])
    status: int = Field(examples=[400])
    detail: str = Field(examples=["The file is not a supported image (JPEG, PNG)"])
    code: str = Field(examples=["unsupported_media_type"])


def problem_docs(*cases: tuple[int, str, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for error cases given as (status, code, detail)."""
    from http import HTTPStatus

    docs: dict[int | str, dict[str, Any]] = {}
    for status, code, detail in cases:
        entry = docs.setdefault(
            status,
            {
                "model": Problem,
                "description": HTTPStatus(status).phrase,
                "content": {"application/problem+json": {"examples": {}}},
            },
        )
        entry["content"]["application/problem+json"]["examples"][code] = {
            "summary": detail,
            "value": {
                "type": "about:blank",
                "title": HTTPStatus(status).phrase,
                "status": status,
                "detail": detail,
                "code": code,
            },
        }
    return docs


UNAUTHORIZED = (401, "unauthorized", "A valid X-API-KEY header is required")
BAD_IMAGE_ID = (400, "validation_error", "Invalid request: image_id: must be a UUID version 4")
IMAGE_NOT_FOUND = (404, "image_not_found", "Image 3fa85f64-5717-4562-b3fc-2c963f66afa6 not found")
