"""Health and readiness schemas."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Health(BaseModel):
    """Liveness answer."""

    status: str = Field(examples=["healthy"])


class ReadinessCheck(BaseModel):
    """One readiness check; a failing `required` one makes the process not ready."""

    name: str
    ok: bool
    detail: str
    required: bool = True


class Readiness(BaseModel):
    """Readiness: `ready` if every check passes, `degraded` (still 200) if only checks that are
    not required fail, else `not ready` (503)."""

    status: str = Field(examples=["ready"])
    checks: list[ReadinessCheck]
