"""Service settings: one pydantic-settings class read from the environment and `.env`.

Every limit the service enforces lives here, so that it can be changed without code.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[list[str], NoDecode]

MiB = 1024 * 1024

# The checkout the service runs from: set-up exports the classifier into its models/, so the
# default works whatever the working directory of `uvicorn app.main:app` is.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """All configuration of the service; env var names are the field names in upper case."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path("data")

    # Upload limits
    max_upload_bytes: int = Field(default=5 * MiB, ge=1)
    max_multipart_overhead_bytes: int = Field(default=64 * 1024, ge=1024)
    max_form_parts: int = Field(default=8, ge=1)
    max_form_field_bytes: int = Field(default=16 * 1024, ge=1)
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    # JPEG check at upload: "structure" (marker walk to EOI, ~1 ms) or "draft" (1/8-scale decode)
    upload_decode_check: Literal["structure", "draft"] = "structure"
    allowed_formats: CommaList = ["jpeg", "png", "webp", "heic"]
    max_json_body_bytes: int = Field(default=64 * 1024, ge=1024)

    # Access
    api_keys: CommaList = []
    cors_origins: CommaList = ["*"]

    # Worker threads: disk work of uploads and cache reads; analyzers (CPU-bound)
    io_threads: int = Field(default=8, ge=1)
    analysis_threads: int = Field(default=2, ge=1)
    # ONNX Runtime intra-op threads per session; 0 = cores // ANALYSIS_THREADS (at least 1),
    # so that analysis threads x intra-op threads never exceed the cores.
    onnx_threads: int = Field(default=0, ge=0)

    # Which model-backed analyzers to load (`skin` is always there): each costs memory
    # (classify ~65 MiB, face ~50 MiB) and start-up time.
    analyzers: CommaList = ["classify", "face"]

    # Models: the ONNX classifier exported at set-up (scripts/export_classifier.py)
    model_dir: Path = PROJECT_ROOT / "models"
    # Face landmarks: "68" (regions; iBUG 300-W licence, non-commercial) or "5" (alignment only, free)
    face_landmarks: Literal["68", "5"] = "68"
    # Faces are detected on a copy at most this long: larger finds smaller faces in big photos
    # (smallest face found ~ long side / this x 40 px) but costs latency (~900 ms at 4000 px).
    face_detect_max_side: int = Field(default=800, ge=200, le=10_000)
    analysis_memory_cache_entries: int = Field(default=10_000, ge=0)

    # Idempotency-Key records (IETF draft): how long a key replays its first response
    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=1)

    # Seed 004 contour jobs: concurrent runs, waiting jobs before 503, finished-job retention
    job_workers: int = Field(default=1, ge=1)
    job_max_pending: int = Field(default=100, ge=0)
    job_retention_seconds: float | None = Field(default=7 * 24 * 3600, gt=0)

    # URL fetches (seed 000 /v1/classify {"url": ...}); loopback only ever for tests
    url_fetch_connect_timeout: float = Field(default=5.0, gt=0)
    url_fetch_read_timeout: float = Field(default=10.0, gt=0)
    url_fetch_total_timeout: float = Field(default=30.0, gt=0)
    url_fetch_max_redirects: int = Field(default=3, ge=0, le=10)
    url_fetch_allow_loopback: bool = False

    # Readiness
    min_free_disk_bytes: int = Field(default=100 * MiB, ge=0)

    # Logging
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"

    @field_validator("allowed_formats", "api_keys", "cors_origins", "analyzers", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return _split_commas(value)

    @field_validator("allowed_formats")
    @classmethod
    def _known_formats(cls, value: list[str]) -> list[str]:
        from app.core.formats import FORMATS

        formats = [item.lower() for item in value]
        unknown = sorted(set(formats) - set(FORMATS))
        if unknown:
            raise ValueError(f"unknown formats {unknown}; known: {sorted(FORMATS)}")
        return formats

    @field_validator("analyzers")
    @classmethod
    def _known_analyzers(cls, value: list[str]) -> list[str]:
        names = [item.lower() for item in value]
        unknown = sorted(set(names) - {"classify", "face", "skin"})
        if unknown:
            raise ValueError(f"unknown analyzers {unknown}; known: classify, face (skin is always on)")
        return names

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def analysis_dir(self) -> Path:
        return self.data_dir / "analysis"

    @property
    def idempotency_dir(self) -> Path:
        return self.data_dir / "idempotency"

    @property
    def onnx_intra_op_threads(self) -> int:
        """ONNX Runtime threads per inference, so that threads x sessions <= cores."""
        if self.onnx_threads:
            return self.onnx_threads
        return max(1, (os.cpu_count() or 1) // self.analysis_threads)

    @property
    def max_request_body_bytes(self) -> int:
        """The most bytes an upload request body may carry: the file plus multipart framing."""
        return self.max_upload_bytes + self.max_multipart_overhead_bytes


@lru_cache
def get_settings() -> Settings:
    """Settings from the environment, read once per process."""
    return Settings()
