"""app.services.jobs.settings: the jobs section reads the same env vars as before."""

from __future__ import annotations

import pytest

from app.core.config import Settings
from app.services.jobs.settings import JobSettings


def test_the_section_follows_its_env_vars(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("JOB_MAX_PENDING", "7")
    monkeypatch.setenv("JOB_WORKERS", "3")
    monkeypatch.setenv("MAX_UPLOAD_BYTES", "3000")
    monkeypatch.setenv("MAX_JSON_BODY_BYTES", "2048")
    monkeypatch.setenv("ALLOWED_FORMATS", "png")
    monkeypatch.setenv("JPEG_MAX_IMAGES", "2")
    jobs = JobSettings.from_settings(Settings(_env_file=None))
    assert (jobs.job_max_pending, jobs.job_workers, jobs.allowed_formats) == (7, 3, ("png",))
    assert jobs.jobs_dir == tmp_path / "jobs"
    assert jobs.max_submit_bytes == 2 * 4 * (3000 // 3 + 1) + 2048  # two base64 images and the JSON
    assert jobs.integrity.jpeg_max_images == 2
