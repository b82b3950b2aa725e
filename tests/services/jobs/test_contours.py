"""app.services.jobs.contours: base64 and data-URL image fields are decoded within their limit;
a contour job with landmarks (no model needed) is submitted, completes with its SVG, is visible
to its owner only, has its webhook event once finished, and is forgotten with its owner (the
service of a running app on a tmp data dir, the embedded job queue)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import anyio
import pytest

from app.core.config import Settings
from app.core.errors import InvalidBase64, JobNotFound, PayloadTooLarge, UnsupportedMediaType
from app.services.accounts.principals import Principal
from app.services.jobs.contours import ContourJobService, ContourJobState, decode_base64_field
from app.services.jobs.records import JobStatus
from tests.logins import running
from tests.services.jobs.engine import landmark_job

OWNER = Principal(id="key:owner", kind="api_key")
STRANGER = Principal(id="key:stranger", kind="api_key")


def test_base64_and_data_urls_decode_within_the_limit() -> None:
    raw = bytes(range(256)) * 4
    text = base64.b64encode(raw).decode()
    assert decode_base64_field(text, "image", 1024) == raw
    assert decode_base64_field(f"data:image/png;base64,{text}", "image", 1024) == raw
    assert decode_base64_field(f"data:;base64,{text}", "image", 1024) == raw
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))  # as `base64` prints it
    assert decode_base64_field(wrapped, "image", 1024) == raw
    with pytest.raises(PayloadTooLarge):
        decode_base64_field(text, "image", 1000)
    with pytest.raises(InvalidBase64):
        decode_base64_field("not base64!", "image", 1024)
    with pytest.raises(InvalidBase64):
        decode_base64_field(f"data:image/png,{text}", "image", 1024)  # not a base64 data URL
    with pytest.raises(UnsupportedMediaType):
        decode_base64_field(f"data:text/html;base64,{text}", "image", 1024)


async def finished(jobs: ContourJobService, job_id: str) -> ContourJobState:
    with anyio.fail_after(60):  # an upper bound: it returns as soon as the job finished
        while True:
            state = await jobs.status(job_id, OWNER)
            if state.status in (JobStatus.COMPLETED, JobStatus.FAILED):
                return state
            await anyio.sleep(0.05)


async def test_a_landmark_job_completes_for_its_owner_only(make_settings: Callable[..., Settings]) -> None:
    async with running(make_settings()) as app:
        jobs: ContourJobService = app.state.services.contour_jobs
        job = await jobs.submit(json.dumps(landmark_job(3)).encode(), OWNER)
        state = await finished(jobs, job.job_id)
        assert state.status == JobStatus.COMPLETED and state.svg is not None and b"<svg" in state.svg
        with pytest.raises(JobNotFound):
            await jobs.status(job.job_id, STRANGER)
        event = await jobs.event_of(job.job_id)
        assert event is not None and event.type == "contour_job.completed"
        assert event.data["job_id"] == job.job_id
        with pytest.raises(LookupError):
            await jobs.event_of("no-such-job")
        assert await jobs.erase_owner(OWNER.id) == 1
        with pytest.raises(JobNotFound):
            await jobs.status(job.job_id, OWNER)
