"""app.services.jobs.records: job statuses and immutable job snapshots (the record file's JSON)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from app.services.jobs.records import FINISHED, Job, JobError, JobStatus


def test_statuses_are_their_wire_names_and_only_two_are_final() -> None:
    assert [s.value for s in JobStatus] == ["pending", "running", "completed", "failed"]
    assert FINISHED == {JobStatus.COMPLETED, JobStatus.FAILED}
    assert JobStatus("running") is JobStatus.RUNNING


def test_a_snapshot_round_trips_through_json_and_is_immutable() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    job = Job(
        job_id="j",
        status=JobStatus.FAILED,
        created_at=now,
        updated_at=now,
        error=JobError(code="no_face_detected", detail="No face"),
        content_key="k",
    )
    assert (job.owner, job.hold_id, job.worker) == ("anonymous", None, None)
    assert Job.model_validate_json(job.model_dump_json()) == job
    with pytest.raises(ValidationError):
        job.status = JobStatus.PENDING  # type: ignore[misc]
    moved = job.model_copy(update={"status": JobStatus.PENDING, "error": None})
    assert job.status is JobStatus.FAILED and moved.status is JobStatus.PENDING


def test_an_unknown_status_or_a_missing_field_is_refused() -> None:
    base = {"job_id": "j", "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}
    with pytest.raises(ValidationError):
        Job.model_validate({**base, "status": "paused", "content_key": "k"})
    with pytest.raises(ValidationError):
        Job.model_validate({**base, "status": "pending"})  # no content_key
