"""The jobs domain's settings section, cut from `Settings` in the composition root.

Field names are the settings' own (env var names in lower case), so each reads as its setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.core.config import Settings
from app.services.validation.limits import IntegrityLimits
from app.services.validation.settings import integrity_limits


def submit_body_limit(settings: Settings) -> int:
    """A submit's body cap: a job carries its image (and label image) base64-encoded in JSON."""
    return 2 * (4 * (settings.max_upload_bytes // 3 + 1)) + settings.max_json_body_bytes


@dataclass(frozen=True)
class JobSettings:
    """Seed 004's contour jobs (`ContourJobService`, its embedded and procrastinate queues)."""

    jobs_dir: Path  # DATA_DIR/jobs (embedded queue)
    database: str  # the SQLAlchemy URL (scale-out: PostgreSQL)
    database_connect_timeout_seconds: float
    max_submit_bytes: int  # see `submit_body_limit`
    max_upload_bytes: int
    allowed_formats: tuple[str, ...]
    max_image_pixels: int
    integrity: IntegrityLimits
    job_workers: int
    job_max_pending: int
    job_retention_seconds: float | None
    job_worker_in_process: bool
    job_heartbeat_seconds: float
    job_stalled_after_seconds: float
    job_sweep_interval_seconds: float
    job_poll_interval_seconds: float
    job_run_delay_seconds: float
    job_maintenance_interval_seconds: float
    storage_orphan_grace_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> JobSettings:
        derived = ("jobs_dir", "max_submit_bytes", "allowed_formats", "integrity")
        named = {name: getattr(settings, name) for name in cls.__dataclass_fields__ if name not in derived}
        return cls(
            jobs_dir=settings.data_dir / "jobs",
            max_submit_bytes=submit_body_limit(settings),
            allowed_formats=tuple(settings.allowed_formats),
            integrity=integrity_limits(settings),
            **named,
        )
