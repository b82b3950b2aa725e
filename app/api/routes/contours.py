"""Seed 004 facial contour jobs: `POST /api/v1/frontal/crop/submit`, `GET .../status/{job_id}`."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import Path, Request
from starlette.responses import Response

from app.api.calls import Call
from app.api.deps import ContourJobsDep, CurrentPrincipal
from app.api.routing import (
    DeclaredRouter,
    Described,
    Policy,
    Reply,
    content_length,
    json_schema,
    lean_route,
    read_body,
    streamed,
)
from app.core.ids import UUID4_PATTERN
from app.schemas.frontal import ContourJobRequest, JobAccepted, JobReusedFrom, JobStatusRead
from app.schemas.problems import UNAUTHORIZED, problem_docs
from app.services.jobs.contours import ContourJobService

router = DeclaredRouter(Policy(authenticate=True, rate_limit="default"), tags=["seed 004"])

SUBMIT_RESPONSES = problem_docs(
    (400, "invalid_base64", "`image` is not valid base64"),
    (400, "invalid_landmarks", "Expected 68 points with finite x and y, got 5"),
    (400, "unsupported_media_type", "`image` is not a supported image (HEIC, JPEG, PNG, WEBP)"),
    (400, "url_not_allowed", "The callback URL is not allowed: its host is a private-network address"),
    UNAUTHORIZED,
    (402, "insufficient_credits", "No credits left: ask an admin for a refill (POST /v1/refill)"),
    (403, "callback_needs_credentials", "Webhooks need an API key or a user token"),
    (413, "payload_too_large", "`image` decodes to more than 5242880 bytes"),
    (503, "queue_full", "100 jobs are already waiting; try again later"),
)


def _described(request: Request) -> Described:
    """A failed submit in the history: JSON of its declared size."""
    return Described("json", content_length(request))


@lean_route(
    router,
    [
        (
            "/api/v1/frontal/crop/submit",
            "Submit a facial image for SVG contour masks (seed 004)",
            "submit_crop",
        )
    ],
    # The body is read by the handler, once the queue has room (capped at its max_submit_bytes)
    policy=Policy(authenticate=True, rate_limit="analyze", body_limit=streamed, history=_described),
    status_code=202,
    response_model=JobAccepted,
    responses=SUBMIT_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": json_schema(ContourJobRequest)}},
        }
    },
)
async def submit_crop(call: Call, jobs: ContourJobService) -> Reply:
    """Accept a contour job (persisted before the answer: it survives a restart). Without
    landmarks the face is detected; with 68 landmarks detection is skipped; with a
    segmentation map the contours are traced from its labels. The same inputs share one
    computation. The body (up to ~14 MB) is parsed off the event loop; while the job queue
    is full a submit is refused (503 with Retry-After) before its body is read."""
    principal = await call.caller()
    await jobs.admit()
    body = await read_body(call.request, jobs.settings.max_submit_bytes)
    job = await jobs.submit(body, principal)
    accepted = JobAccepted(job_id=job.job_id, status=str(job.status))
    headers = {"X-Cache": "REUSED"} if job.reused_from is not None else None
    response = Response(accepted.model_dump_json(), 202, headers, media_type="application/json")
    return Reply(response, Described("json", len(body)))


@router.get(
    "/api/v1/frontal/crop/status/{job_id}",
    response_model=JobStatusRead,
    summary="Status of a contour job (seed 004)",
    responses=problem_docs(
        (400, "validation_error", "Invalid request: job_id: must be a UUID version 4"),
        UNAUTHORIZED,
        (404, "job_not_found", "Job not found"),
    ),
)
async def crop_status(
    job_id: Annotated[str, Path(pattern=UUID4_PATTERN)], jobs: ContourJobsDep, principal: CurrentPrincipal
) -> JobStatusRead:
    """`pending`, `running`, `completed` (with `result`: the SVG document, base64) or `failed`
    (with `error` and `error_code`, e.g. `no_face_detected`). A job answered by the earlier job
    of a near-duplicate image says so in `reused_from` (that job and the PDQ distance)."""
    state = await jobs.status(job_id.lower(), principal)
    return JobStatusRead(
        job_id=state.job_id,
        status=str(state.status),
        result=base64.b64encode(state.svg).decode() if state.svg is not None else None,
        error=state.error,
        error_code=state.error_code,
        reused_from=(
            JobReusedFrom(job_id=state.reused_from, distance=state.reused_distance or 0)
            if state.reused_from is not None
            else None
        ),
    )
