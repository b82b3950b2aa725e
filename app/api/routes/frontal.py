"""Seed 004 facial contour jobs: `POST /api/v1/frontal/crop/submit`, `GET .../status/{job_id}`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse

from app.api.deps import PrincipalDep, ServicesDep
from app.core.ids import UUID4_PATTERN
from app.schemas.frontal import CropSubmit, JobAccepted, JobStatusRead
from app.schemas.problems import UNAUTHORIZED, problem_docs

router = APIRouter(prefix="/api/v1/frontal/crop", tags=["seed 004"])

SUBMIT_PATH = "/api/v1/frontal/crop/submit"


@router.post(
    "/submit",
    status_code=202,
    response_model=JobAccepted,
    summary="Submit a facial image for SVG contour masks (seed 004)",
    responses=problem_docs(
        (400, "invalid_base64", "`image` is not valid base64"),
        (400, "invalid_landmarks", "Expected 68 points with finite x and y, got 5"),
        (400, "unsupported_media_type", "`image` is not a supported image"),
        UNAUTHORIZED,
        (413, "payload_too_large", "`image` decodes to more than 5242880 bytes"),
        (503, "queue_full", "Too many jobs are waiting; try again later"),
    ),
)
async def submit_crop(request: CropSubmit, services: ServicesDep, _: PrincipalDep) -> JSONResponse:
    """Accept a contour job (persisted before the answer: it survives a restart). Without
    landmarks the face is detected; with 68 landmarks detection is skipped; with a
    segmentation map the contours are traced from its labels. The same inputs share one
    computation."""
    job = await services.frontal.submit(request)
    return JSONResponse({"job_id": job.job_id, "status": str(job.status)}, status_code=202)


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
