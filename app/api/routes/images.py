"""Image routes: upload (seed 001 `/upload`, seed 002 `/api/v1/upload`; lean), read, delete."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Header, Path, Query
from fastapi.responses import FileResponse, StreamingResponse
from starlette.responses import MalformedRangeHeader, Response
from starlette.responses import RangeNotSatisfiable as UnsatisfiableRange

from app.api.calls import Call
from app.api.deps import CurrentPrincipal, ImagesDep
from app.api.routing import (
    DeclaredRouter,
    Policy,
    Reply,
    body_stream,
    content_length,
    lean_route,
    multipart_body,
    streamed,
)
from app.api.security_headers import IMAGE_CONTENT_CSP, content_disposition
from app.core.errors import ImageNotFound, RangeNotSatisfiable
from app.core.formats import FORMATS
from app.core.ids import UUID4_PATTERN
from app.schemas.images import ImagePage
from app.schemas.problems import BAD_IMAGE_ID, IMAGE_NOT_FOUND, UNAUTHORIZED, problem_docs
from app.services.images.ingest import IngestService
from app.storage.metadata import ImageMetadata
from app.storage.object_images import ObjectImages
from app.storage.objects import ObjectStream

router = DeclaredRouter(Policy(authenticate=True, rate_limit="default"), tags=["images"])

ImageIdPath = Annotated[
    str,
    Path(
        pattern=UUID4_PATTERN,
        description="A UUID4 returned by an upload",
        examples=["3fa85f64-5717-4562-b3fc-2c963f66afa6"],
    ),
]

UPLOAD_BODY = multipart_body(
    {
        "file": {
            "type": "string",
            "format": "binary",
            "description": "JPEG, PNG, WebP or HEIC (type read from the bytes), at most MAX_UPLOAD_BYTES",
        }
    },
    required=["file"],
)

UPLOAD_ERRORS = problem_docs(
    (400, "unsupported_media_type", "The file is not a supported image (JPEG, PNG)"),
    (400, "empty_file", "The uploaded file is empty"),
    (400, "undecodable_image", "The image cannot be decoded (OSError: image file is truncated)"),
    (400, "image_too_large", "The image has 20000x20000 = 400000000 pixels; the limit is 50331648"),
    (400, "missing_file", "The form has no `file` file part"),
    (400, "too_many_files", "Send exactly one file, in the form field `file`"),
    (400, "malformed_multipart", "Expected a multipart/form-data body with a `file` part"),
    UNAUTHORIZED,
    (409, "idempotency_key_in_use", "A request with this Idempotency-Key is still being processed"),
    (413, "payload_too_large", "The file exceeds the limit of 5242880 bytes"),
    (422, "idempotency_key_reused", "This Idempotency-Key was used with a different request body"),
    (503, "storage_full", "The service's storage is full; try again later"),
)


BINARY = {"type": "string", "format": "binary"}


def image_location(image_id: str) -> str:
    """The canonical URL path of an image's metadata."""
    return f"/api/v1/images/{image_id}"


@lean_route(
    router,
    [
        ("/upload", "Upload an image (seed 001)", "upload_image_legacy"),
        ("/api/v1/upload", "Upload an image", "upload_image"),
    ],
    policy=Policy(authenticate=True, rate_limit="upload", body_limit=streamed),
    headers={
        "Idempotency-Key": "Retry-safe uploads: the same key and file replay the first response for 24 h",
    },
    status_code=201,
    response_model=ImageMetadata,
    responses=UPLOAD_ERRORS,
    openapi_extra={"requestBody": UPLOAD_BODY},
)
async def upload_image(call: Call, ingest: IngestService) -> Reply:
    """Upload one image as multipart field `file`; the body streams straight to disk.

    Returns 201 with the image's metadata and a `Location` header. The type is read from
    the bytes (JPEG, PNG, WebP or HEIC); the declared part type may be
    `application/octet-stream`.
    """
    request = call.request
    headers = request.headers
    outcome = await ingest.upload(
        content_type=headers.get("content-type"),
        content_length=content_length(request),
        chunks=body_stream(request),
        idempotency_key=headers.get("idempotency-key"),
        owner=await call.caller(),
    )
    response_headers = {"Location": image_location(outcome.image_id)}
    if outcome.replayed:
        response_headers["Idempotent-Replayed"] = "true"
    return Reply(Response(outcome.metadata.to_json(), 201, response_headers, "application/json"))


@router.get(
    "/api/v1/images/{image_id}",
    response_model=ImageMetadata,
    summary="Image metadata",
    responses=problem_docs(BAD_IMAGE_ID, UNAUTHORIZED, IMAGE_NOT_FOUND),
)
async def read_image(image_id: ImageIdPath, images: ImagesDep, principal: CurrentPrincipal) -> ImageMetadata:
    """The metadata stored at upload (another caller's image is 404)."""
    return await images.metadata(image_id.lower(), principal)


@router.get(
    "/api/v1/images",
    response_model=ImagePage,
    summary="List your images",
    responses=problem_docs(UNAUTHORIZED),
)
async def list_images(
    images: ImagesDep,
    principal: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> ImagePage:
    """The caller's images, newest first (an admin sees every image)."""
    total, items = await images.list(principal, limit, offset)
    return ImagePage(total=total, limit=limit, offset=offset, items=items)


@router.get(
    "/api/v1/images/{image_id}/content",
    summary="Original image bytes",
    response_class=FileResponse,
    responses={
        200: {
            "content": {fmt.mime: {"schema": BINARY} for fmt in FORMATS.values()},
            "description": "The bytes as uploaded",
            "headers": {
                "Content-Disposition": {
                    "description": "`inline`, with the stored file name (its extension the real type's)",
                    "schema": {"type": "string"},
                },
                "Content-Security-Policy": {
                    "description": "`sandbox`: opened as a page, the bytes can run nothing",
                    "schema": {"type": "string"},
                },
                "ETag": {"description": "The SHA-256 of the bytes", "schema": {"type": "string"}},
                "Cache-Control": {
                    "description": "`private, no-cache`: a browser may keep the bytes but revalidates "
                    "them (If-None-Match, 304) before each use, so a deleted image is not shown again",
                    "schema": {"type": "string"},
                },
            },
        },
        304: {"description": "Not modified (If-None-Match matched the ETag)"},
        **problem_docs(BAD_IMAGE_ID, UNAUTHORIZED, IMAGE_NOT_FOUND),
    },
)
async def read_image_content(
    image_id: ImageIdPath,
    images: ImagesDep,
    principal: CurrentPrincipal,
    if_none_match: Annotated[str | None, Header()] = None,
    range_: Annotated[str | None, Header(alias="range", include_in_schema=False)] = None,
    if_range: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """The original bytes, streamed, with their type and an ETag (the SHA-256)."""
    image = await images.get(image_id.lower(), principal)
    etag = image.metadata.etag
    # Kept by the client's own cache only, and revalidated before each use (a 304 is cheap), so
    # a deleted or erased image is never served from a cache.
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if if_none_match is not None and etag in {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    meta = image.metadata
    headers["Content-Disposition"] = content_disposition(meta.filename, meta.image_format.extension)
    headers["Content-Security-Policy"] = IMAGE_CONTENT_CSP
    if images.objects is not None:
        if if_range is not None and if_range != etag:
            range_ = None  # the client's copy is not this one: the whole image
        return await object_response(images.objects, meta, range_, headers)
    return ImageFileResponse(image.path, media_type=meta.content_type, headers=headers)


async def object_response(
    objects: ObjectImages, meta: ImageMetadata, http_range: str | None, headers: dict[str, str]
) -> Response:
    """The image streamed from object storage: the whole of it, or one byte range (206). A
    Range of several ranges is answered with the whole image (RFC 9110 lets a server ignore
    Range); one that starts past the end is a 416 problem, as for local files."""
    ranges = ImageFileResponse._parse_range_header(http_range, meta.size_bytes) if http_range else []
    first, last = ranges[0] if len(ranges) == 1 else (0, None)
    stream = await objects.open(meta, first, None if last is None else last - 1)
    if stream is None:
        raise ImageNotFound(f"Image {meta.image_id} not found")
    headers = {**headers, "Accept-Ranges": "bytes", "Content-Length": str(stream.length)}
    status = 200
    if len(ranges) == 1:
        status = 206
        headers["Content-Range"] = f"bytes {stream.first}-{stream.last}/{stream.info.size}"
    return StreamingResponse(_released(stream), status, headers, meta.content_type)


async def _released(stream: ObjectStream) -> AsyncIterator[bytes]:
    """The stream's chunks; its connection released however the response ends (a client that
    hangs up included)."""
    try:
        async for chunk in stream:
            yield chunk
    finally:
        await stream.aclose()


class ImageFileResponse(FileResponse):
    """Starlette's file response, its Range errors as RFC 9110 has them: an invalid Range is
    ignored (the whole file, 200); one that starts past the end is a 416 problem."""

    @classmethod
    def _parse_range_header(cls, http_range: str, file_size: int) -> list[tuple[int, int]]:
        try:
            return super()._parse_range_header(http_range, file_size)
        except MalformedRangeHeader:
            return []
        except UnsatisfiableRange:
            raise RangeNotSatisfiable(
                f"The image has {file_size} bytes", headers={"Content-Range": f"bytes */{file_size}"}
            ) from None


@router.delete(
    "/api/v1/images/{image_id}",
    status_code=204,
    summary="Delete an image and its analyses",
    response_class=Response,
    responses=problem_docs(BAD_IMAGE_ID, UNAUTHORIZED, IMAGE_NOT_FOUND),
)
async def delete_image(image_id: ImageIdPath, images: ImagesDep, principal: CurrentPrincipal) -> Response:
    """Remove the image, its metadata and every cached analysis of it."""
    await images.delete(image_id.lower(), principal)
    return Response(status_code=204)
