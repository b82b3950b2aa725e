"""Analysis schemas: the analyze request and the skin result."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from app.core.ids import normalize_uuid4

ImageId = Annotated[
    str,
    Field(examples=["3fa85f64-5717-4562-b3fc-2c963f66afa6"], description="A UUID4 from an upload"),
    AfterValidator(normalize_uuid4),
]


class AnalyzeRequest(BaseModel):
    """Which image to analyze, with which analyzer."""

    model_config = ConfigDict(extra="forbid")

    image_id: ImageId
    analyzer: str = Field(default="skin", examples=["skin"], max_length=64)
    params: dict[str, Any] = Field(default_factory=dict, description="Analyzer parameters")
    reuse: bool = Field(
        default=True,
        description="Let the result of a near-duplicate image answer (`reused_from`, `X-Cache: REUSED`)",
    )
    reuse_distance: int | None = Field(
        default=None,
        ge=0,
        le=31,
        description="A tighter PDQ distance for this request (at most PERCEPTUAL_REUSE_DISTANCE)",
    )


class SkinAnalysis(BaseModel):
    """Result of the default `skin` analyzer."""

    image_id: str = Field(examples=["3fa85f64-5717-4562-b3fc-2c963f66afa6"])
    skin_type: str = Field(examples=["Oily"])
    issues: list[str] = Field(examples=[["Hyperpigmentation", "Acne"]])
    confidence: float = Field(examples=[0.87])
    analyzer: str = Field(examples=["skin"])
    analyzer_version: str = Field(examples=["1"])
