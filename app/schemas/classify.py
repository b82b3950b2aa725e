"""Seed 000 schemas: classify an image at a URL."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ClassifyUrlRequest(BaseModel):
    """Classify the image at a public http(s) URL."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048, examples=["https://example.com/cat.jpg"])
    top_k: int = Field(default=5, ge=1, le=1000)
    model: str | None = Field(
        default=None, max_length=64, description="A classifier named in MODELS (default: MODEL_PATH's)"
    )
