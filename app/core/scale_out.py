"""Start-up check of scale-out mode (`STORAGE_URL=s3://...`): the shared engines it needs.

Replicas with object storage keep nothing another replica needs, so what they share must be
on servers every host reaches: PostgreSQL for the records (a SQLite file is one host's) and
Redis for rate limits and the login throttle (in memory they multiply by the replicas).
`SCALE_OUT_CHECKS=false` lifts the check for S3 storage on a single host.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.config import Settings


@dataclass(frozen=True)
class ScaleOutSettings:
    """What the check reads (a section of `Settings`): the storage, the database, Redis."""

    storage_url: str | None
    scale_out_checks: bool
    database: str  # the SQLAlchemy URL (DATABASE_URL, else the SQLite file in DATA_DIR)
    redis_url: str | None

    @classmethod
    def from_settings(cls, settings: Settings) -> ScaleOutSettings:
        return cls(settings.storage_url, settings.scale_out_checks, settings.database, settings.redis_url)


class ScaleOutMisconfigured(RuntimeError):
    """Scale-out mode without the shared engines it needs: the service refuses to start."""


def scale_out_problems(settings: ScaleOutSettings) -> list[str]:
    """What scale-out mode lacks under `settings` (empty: fine, or not scale-out mode)."""
    if settings.storage_url is None or not settings.scale_out_checks:
        return []
    problems = []
    if not settings.database.startswith("postgresql"):
        problems.append(
            "DATABASE_URL must be PostgreSQL (postgresql+asyncpg://...): a SQLite file cannot be"
            " shared by replicas on different hosts"
        )
    if not settings.redis_url:
        problems.append(
            "REDIS_URL must be set: rate limits and the login throttle kept in each replica's"
            " memory would multiply by the number of replicas"
        )
    return problems


def check_scale_out(settings: ScaleOutSettings) -> None:
    """Raise ScaleOutMisconfigured, naming every missing setting, if scale-out mode lacks one."""
    problems = scale_out_problems(settings)
    if problems:
        raise ScaleOutMisconfigured(
            "STORAGE_URL=s3://... (scale-out mode) needs shared engines: "
            + "; ".join(problems)
            + " (SCALE_OUT_CHECKS=false for S3 storage on a single host)"
        )
