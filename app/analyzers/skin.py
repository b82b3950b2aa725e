"""Deterministic skin analysis seeded by SHA-256 of the image id.

A mock peer of the real analyzers: the same image id gives the same result in every
process and on every Python version, because every choice is read straight off the
digest bytes (never Python's `hash()` or `random`).
"""

from __future__ import annotations

import hashlib
from typing import ClassVar

from pydantic import BaseModel, Field

from app.analyzers.base import ImageSource, NoParams, ReuseScope

SKIN_TYPES: tuple[str, ...] = ("Normal", "Dry", "Oily", "Combination", "Sensitive")
SKIN_ISSUES: tuple[str, ...] = (
    "Acne",
    "Hyperpigmentation",
    "Wrinkles",
    "Redness",
    "Enlarged pores",
    "Dark circles",
    "Dehydration",
    "Uneven texture",
)


class SkinResult(BaseModel):
    """Result of the skin analyzer."""

    skin_type: str = Field(examples=["Oily"])
    issues: list[str] = Field(max_length=3, examples=[["Hyperpigmentation", "Acne"]])
    confidence: float = Field(ge=0.70, le=0.99, examples=[0.87])


def skin_analysis(image_id: str) -> SkinResult:
    """The deterministic skin analysis of `image_id` (its canonical string form)."""
    digest = hashlib.sha256(image_id.encode("ascii")).digest()
    skin_type = SKIN_TYPES[digest[0] % len(SKIN_TYPES)]
    count = digest[1] % 4
    # Partial Fisher-Yates shuffle driven by digest bytes: `count` distinct issues.
    pool = list(SKIN_ISSUES)
    issues = []
    for i in range(count):
        j = i + digest[2 + i] % (len(pool) - i)
        pool[i], pool[j] = pool[j], pool[i]
        issues.append(pool[i])
    confidence = (70 + int.from_bytes(digest[8:12], "big") % 30) / 100
    return SkinResult(skin_type=skin_type, issues=issues, confidence=confidence)


class SkinAnalyzer:
    """The `skin` analyzer (default)."""

    name: ClassVar[str] = "skin"
    version: ClassVar[str] = "1"
    description: ClassVar[str] = "Deterministic mock skin analysis seeded by SHA-256 of the image id"
    params_model: ClassVar[type[BaseModel]] = NoParams
    model_backed: ClassVar[bool] = False
    reuse: ClassVar[ReuseScope] = "none"  # the seeds seed the result by the image id
    result_model: ClassVar[type[BaseModel]] = SkinResult

    def analyze(self, source: ImageSource, params: BaseModel) -> BaseModel:
        return skin_analysis(source.image_id)
