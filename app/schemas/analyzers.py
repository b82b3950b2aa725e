"""Schemas of the analyzer listing."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class AnalyzerRead(BaseModel):
    """One analyzer: what it is, its version (part of every cache key) and its params."""

    name: str = Field(examples=["classify"])
    version: str = Field(examples=["1"])
    description: str
    params: dict[str, Any] = Field(description="JSON Schema of the `params` object")
    available: bool = True
    reason: str | None = Field(default=None, description="Why an analyzer is not loaded")
