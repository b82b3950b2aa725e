"""Image routes: upload (seed 001 `/upload`, seed 002 `/api/v1/upload`), read, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request
from fastapi.responses import FileResponse
from starlette.responses import Response

from app.api.deps import ImageServiceDep, PrincipalDep
from app.core.ids import UUID4_PATTERN
from app.schemas.images import ImageRead
from app.schemas.problems import BAD_IMAGE_ID, IMAGE_NOT_FOUND, UNAUTHORIZED, problem_docs

router = APIRouter(tags=["images"])

ImageIdPath = Annotated[
    str,
    Path(
        pattern=UUID4_PATTERN,
        description="A UUID4 returned by an upload",
        examples=["3fa85f64-5717-4562-b3fc-2c963f66afa6"],
    ),
]

UPLOAD_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "JPEG or PNG (type read from the bytes), at most MAX_UPLOAD_BYTES",
                        }
                    },
                }
            }
        },
    }
}

UPLOAD_ERRORS = problem_docs(
    (400, "unsupported_media_type", "The file is not a supported image (JPEG, PNG)"),
    (400, "empty_file", "The uploaded file is empty"),
    (400, "undecodable_image", "The image cannot be decoded (OSError: image file is truncated)"),
    (400, "image_too_large", "The image has 20000x20000 = 400000000 pixels; the limit is 40000000"),
    (400, "missing_file", "The form has no `file` file part"),
    (400, "too_many_files", "Send exactly one file, in the form field `file`"),
    (400, "malformed_multipart", "Expected a multipart/form-data body with a `file` part"),
    UNAUTHORIZED,
    (409, "idempotency_key_in_use", "A request with this Idempotency-Key is still being processed"),
    (413, "payload_too_large", "The file exceeds the limit of 5242880 bytes"),
    (422, "idempotency_key_reused", "This Idempotency-Key was used with a different request body"),
)


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    return int(value) if value is not None and value.isdigit() else None


async def upload_image(
    request: Request,
    images: ImageServiceDep,
    principal: PrincipalDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Retry-safe uploads: the same key and file replay the first response for 24 h",
        ),
    ] = None,
) -> Response:
    """Upload one image as multipart field `file`; the body streams straight to disk."""
    outcome = await images.upload(
        content_type=request.headers.get("content-type"),
        content_length=_content_length(request),
        chunks=request.stream(),
        idempotency_key=idempotency_key,
        scope=principal,
    )
    headers = {"Location": outcome.location}
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(outcome.body, status_code=201, media_type="application/json", headers=headers)


_UPLOAD_ROUTE: dict[str, Any] = {
    "status_code": 201,
    "response_model": ImageRead,
    "responses": UPLOAD_ERRORS,
    "openapi_extra": UPLOAD_OPENAPI,
    "response_class": Response,
}
router.add_api_route(
    "/upload",
    upload_image,
    methods=["POST"],
    summary="Upload an image (seed 001)",
    operation_id="upload_image_legacy",
    **_UPLOAD_ROUTE,
)
router.add_api_route(
    "/api/v1/upload",
    upload_image,
    methods=["POST"],
    summary="Upload an image",
    operation_id="upload_image",
    **_UPLOAD_ROUTE,
)


@router.get(
    "/api/v1/images/{image_id}",
    response_model=ImageRead,
    summary="Image metadata",
    responses=problem_docs(BAD_IMAGE_ID, UNAUTHORIZED, IMAGE_NOT_FOUND),
)
async def read_image(image_id: ImageIdPath, images: ImageServiceDep, _: PrincipalDep) -> dict[str, object]:
    """The metadata stored at upload."""
    return await images.metadata(image_id.lower())


@router.get(
    "/api/v1/images/{image_id}/content",
    summary="Original image bytes",
    response_class=FileResponse,
    responses={
        200: {"content": {"image/jpeg": {}, "image/png": {}}, "description": "The bytes as uploaded"},
        304: {"description": "Not modified (If-None-Match matched the ETag)"},
        **problem_docs(BAD_IMAGE_ID, UNAUTHORIZED, IMAGE_NOT_FOUND),
    },
)
async def read_image_content(
    image_id: ImageIdPath,
    images: ImageServiceDep,
    _: PrincipalDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The original bytes, streamed, with their type and an ETag (the SHA-256)."""
    content = await images.content(image_id.lower())
    headers = {"ETag": content.etag, "Cache-Control": "private, max-age=31536000, immutable"}
    if if_none_match is not None and content.etag in {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    return FileResponse(content.path, media_type=content.media_type, headers=headers)


@router.delete(
    "/api/v1/images/{image_id}",
    status_code=204,
    summary="Delete an image and its analyses",
    response_class=Response,
    responses=problem_docs(BAD_IMAGE_ID, UNAUTHORIZED, IMAGE_NOT_FOUND),
)
async def delete_image(image_id: ImageIdPath, images: ImageServiceDep, _: PrincipalDep) -> Response:
    """Remove the image, its metadata and every cached analysis of it."""
    await images.delete(image_id.lower())
    return Response(status_code=204)
