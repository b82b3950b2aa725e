"""Readiness: is this process able to serve? (data dirs writable, free disk, analyzers loaded)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from app.analyzers.registry import AnalyzerRegistry
from app.core.config import Settings


@dataclass(frozen=True)
class Check:
    """One readiness check and what it found."""

    name: str
    ok: bool
    detail: str


def readiness_checks(settings: Settings, registry: AnalyzerRegistry) -> list[Check]:
    """Every readiness check (blocking: a few `stat`s; call it from a thread)."""
    dirs = (settings.images_dir, settings.analysis_dir, settings.idempotency_dir)
    writable = all(os.access(d, os.W_OK) for d in dirs)
    free = shutil.disk_usage(settings.data_dir).free
    names = registry.names()
    missing = registry.unavailable
    loaded = "loaded: " + ", ".join(names)
    if missing:
        loaded += "; not loaded: " + "; ".join(f"{name} ({why})" for name, why in sorted(missing.items()))
    return [
        Check("data_dir_writable", writable, str(settings.data_dir)),
        Check(
            "free_disk",
            free >= settings.min_free_disk_bytes,
            f"{free} bytes free, {settings.min_free_disk_bytes} required",
        ),
        Check("analyzers_loaded", bool(names) and not missing, loaded),
    ]
