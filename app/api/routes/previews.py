"""Image previews: `GET /api/v1/images/{image_id}/preview?width=256`, a resized JPEG of the
content (`app.services.images.previews`), cached like an analysis."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Query
from starlette.responses import Response

from app.api.deps import CurrentPrincipal, PreviewsDep
from app.api.routes.images import BINARY, ImageIdPath
from app.api.routing import DeclaredRouter, Policy
from app.api.security_headers import IMAGE_CONTENT_CSP
from app.schemas.problems import BAD_IMAGE_ID, IMAGE_NOT_FOUND, UNAUTHORIZED, problem_docs

router = DeclaredRouter(Policy(authenticate=True, rate_limit="default"), tags=["images"])


WIDTH_DOC = "Pixels; one of PREVIEW_WIDTHS (default 64, 128, 256, 512, 1024)"


@router.get(
    "/api/v1/images/{image_id}/preview",
    summary="A resized preview of the image (JPEG)",
    response_class=Response,
    responses={
        200: {
            "content": {"image/jpeg": {"schema": BINARY}},
            "description": "The upright image at most `width` pixels wide (never enlarged); a repeat "
            "is the same bytes (`X-Cache: HIT`)",
            "headers": {
                "X-Cache": {"description": "HIT or MISS", "schema": {"type": "string"}},
                "ETag": {"description": "Names the image, width and quality", "schema": {"type": "string"}},
            },
        },
        304: {"description": "Not modified (If-None-Match matched the ETag)"},
        **problem_docs(
            BAD_IMAGE_ID,
            (400, "validation_error", "Invalid request: width: must be one of 64, 128, 256, 512, 1024"),
            UNAUTHORIZED,
            IMAGE_NOT_FOUND,
            (503, "queue_full", "Too many preview analyses are waiting (64); try again later"),
        ),
    },
)
async def read_preview(
    image_id: ImageIdPath,
    previews: PreviewsDep,
    principal: CurrentPrincipal,
    width: Annotated[int, Query(ge=1, le=100_000, description=WIDTH_DOC)] = 256,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """A JPEG of the image at most `width` pixels wide, upright (EXIF orientation applied),
    rendered once and kept with the image's analyses (deleted with it)."""
    previews.check_width(width)
    image = await previews.images.get(image_id.lower(), principal)
    etag = previews.etag_of(image, width)
    headers = {
        "ETag": etag,
        "Cache-Control": "private, no-cache",  # as the content: revalidated, never shown once deleted
        "Content-Security-Policy": IMAGE_CONTENT_CSP,
    }
    if if_none_match is not None and etag in {tag.strip() for tag in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    preview = await previews.preview(image, width)
    headers["X-Cache"] = "HIT" if preview.cached else "MISS"
    return Response(preview.body, 200, headers, "image/jpeg")
