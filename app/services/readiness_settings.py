"""Readiness's settings section, cut from `Settings` in the composition root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from app.core.config import Settings


@dataclass(frozen=True)
class ReadinessSettings:
    """What readiness checks (a section of `Settings`): the data dirs and disk floor, the database
    and its timeout, the Redis outage policy."""

    data_dir: Path
    images_dir: Path
    analysis_dir: Path
    min_free_disk_bytes: int
    database: str
    database_connect_timeout_seconds: float
    redis_outage_policy: Literal["fail-open", "fail-closed"]

    @classmethod
    def from_settings(cls, settings: Settings) -> ReadinessSettings:
        return cls(**{name: getattr(settings, name) for name in cls.__dataclass_fields__})
