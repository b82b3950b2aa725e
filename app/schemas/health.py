"""Health and readiness schemas."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Health(BaseModel):
    """Liveness answer."""

    status: str = Field(examples=["healthy"])


class ReadinessCheck(BaseModel):
    """One readiness check."""

    name: str
    ok: bool
    detail: str


class Readiness(BaseModel):
    """Readiness: ready only if every check passes."""

    status: str = Field(examples=["ready"])
    checks: list[ReadinessCheck]
