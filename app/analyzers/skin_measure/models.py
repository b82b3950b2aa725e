"""Params and result models of the measured skin analysis (`skin-measure`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.analyzers.face.regions import FaceBox, HeadPose


class SkinMeasureParams(BaseModel):
    """Params of the `skin-measure` analyzer (the quality gate's thresholds are settings)."""

    model_config = ConfigDict(extra="forbid")

    spot_min_delta_l: float = Field(
        5.0, ge=1.0, le=30.0, description="How much darker (ΔL*) than its surroundings a spot must be"
    )
    overlay: bool = Field(True, description="Include the SVG overlay of the measured regions")


class Metric(BaseModel):
    """One measurement: its value and unit, and a 0-100 score (100 = most pronounced)."""

    value: float
    unit: str
    score: int = Field(ge=0, le=100)


class ToneMetric(Metric):
    """Tone: ITA° (score: 0 darkest to 100 lightest), its category and the nearest Monk swatch."""

    category: str = Field(examples=["intermediate"])
    monk: int = Field(ge=1, le=10, description="Nearest Monk Skin Tone swatch (1 lightest, 10 darkest)")
    monk_delta_e: float = Field(description="CIE76 ΔE*ab to that swatch")
    lab: list[float] = Field(min_length=3, max_length=3, description="Median L*, a*, b* of the skin")


class RegionRedness(BaseModel):
    """Redness of one region: mean a* and the mean erythema index."""

    a: float
    erythema_index: float


class RednessMetric(Metric):
    """Redness: mean a* of the cheeks; per region a* and erythema index."""

    regions: dict[str, RegionRedness]


class ShineMetric(Metric):
    """Shine: % of specular pixels in the T-zone (forehead, nose bridge, chin); the cheeks beside it."""

    cheeks: float = Field(description="% of specular pixels on the cheeks")


class SpotsMetric(Metric):
    """Spots: count of local dark blobs; their share of the measured skin."""

    area_percent: float


class SkinMetrics(BaseModel):
    """Every measurement."""

    tone: ToneMetric
    redness: RednessMetric
    shine: ShineMetric
    texture: Metric
    dark_circles: Metric
    spots: SpotsMetric


class RegionStats(BaseModel):
    """Skin pixels of one region (canonical frame) and their median colour."""

    pixels: int
    lab: list[float] | None = Field(description="Median L*, a*, b*; null without skin pixels")


class WhiteBalance(BaseModel):
    """The white-balance check: median a*, b* of the image's near-neutral pixels."""

    status: str = Field(description="ok, cast (a colour cast: colours are off) or unknown (too few neutrals)")
    a: float | None
    b: float | None


class ImageQuality(BaseModel):
    """What the quality gate measured (each passed its threshold)."""

    face_px: int
    head_pose: HeadPose
    sharpness: float = Field(
        description="Variance of the Laplacian of the luma (0-255) of the eyes and brows (canonical frame)"
    )
    brightness: float = Field(description="Median L* of the face regions (the skin's own; not gated)")
    clipped_fraction: float = Field(description="Share of face-region pixels with a channel >= 250")
    highlights: float = Field(description="99th percentile L* of the whole photo")
    eye_white: float | None = Field(
        description="90th percentile L* inside the eye openings (their whites); null when the eyes are closed"
    )
    white_balance: WhiteBalance


class SkinMeasureResult(BaseModel):
    """Result of `skin-measure`: the seed-shaped summary, the measurements and how they were made."""

    skin_type: str = Field(examples=["Normal"])
    issues: list[str] = Field(max_length=3, examples=[["Dark circles"]])
    confidence: float = Field(ge=0.70, le=0.99, examples=[0.93])
    metrics: SkinMetrics
    regions: dict[str, RegionStats]
    face_box: FaceBox
    quality: ImageQuality
    svg: str | None = Field(description="Overlay of the measured regions in image coordinates")
