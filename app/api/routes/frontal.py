"""Seed 004 facial contour jobs: `POST /api/v1/frontal/crop/submit`, `GET .../status/{job_id}`."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Path
from starlette.types import Receive, Scope, Send

from app.api.deps import PrincipalDep, ServicesDep
from app.api.lean import add_lean_routes, principal_of, read_body, send_bytes, services_of
from app.core.ids import UUID4_PATTERN
from app.schemas.frontal import CropSubmit, JobAccepted, JobStatusRead
from app.schemas.problems import UNAUTHORIZED, problem_docs

router = APIRouter(prefix="/api/v1/frontal/crop", tags=["seed 004"])

SUBMIT_PATH = "/api/v1/frontal/crop/submit"


SUBMIT_RESPONSES = problem_docs(
    (400, "invalid_base64", "`image` is not valid base64"),
    (400, "invalid_landmarks", "Expected 68 points with finite x and y, got 5"),
    (400, "unsupported_media_type", "`image` is not a supported image (HEIC, JPEG, PNG, WEBP)"),
    UNAUTHORIZED,
    (413, "payload_too_large", "`image` decodes to more than 5242880 bytes"),
    (503, "queue_full", "Too many jobs are waiting; try again later"),
)


async def submit_handler(scope: Scope, receive: Receive, send: Send) -> None:
    """Serve a submit: the body (size-capped by the middleware) is parsed in a worker thread."""
    services = services_of(scope)
    principal_of(scope, services)
    job = await services.frontal.submit(await read_body(receive))
    await send_bytes(send, 202, json.dumps({"job_id": job.job_id, "status": str(job.status)}).encode())


async def submit_crop(request: CropSubmit, _: PrincipalDep) -> JobAccepted:
    """Accept a contour job (persisted before the answer: it survives a restart). Without
    landmarks the face is detected; with 68 landmarks detection is skipped; with a
    segmentation map the contours are traced from its labels. The same inputs share one
    computation."""
    # Documentation only: LeanRoute serves this operation with `submit_handler`.
    raise AssertionError("served by submit_handler")


def install_frontal_routes(app: FastAPI) -> None:
    """Add seed 004's submit route (lean: large JSON bodies are parsed off the event loop)."""
    add_lean_routes(
        app,
        [(SUBMIT_PATH, "Submit a facial image for SVG contour masks (seed 004)", "submit_crop")],
        submit_crop,
        submit_handler,
        methods=["POST"],
        tags=["seed 004"],
        status_code=202,
        response_model=JobAccepted,
        responses=SUBMIT_RESPONSES,
    )


@router.get(
    "/status/{job_id}",
    response_model=JobStatusRead,
    summary="Status of a contour job (seed 004)",
    responses=problem_docs(
        (400, "validation_error", "Invalid request: job_id: must be a UUID version 4"),
        UNAUTHORIZED,
        (404, "job_not_found", "Job not found"),
    ),
)
async def crop_status(
    job_id: Annotated[str, Path(pattern=UUID4_PATTERN)], services: ServicesDep, _: PrincipalDep
) -> dict[str, Any]:
    """`pending`, `running`, `completed` (with `result`: the SVG document, base64) or `failed`
    (with `error` and `error_code`, e.g. `no_face_detected`)."""
    return await services.frontal.status(job_id.lower())
