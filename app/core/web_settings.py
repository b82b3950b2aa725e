"""Settings of the web page and of image previews (part of `Settings`); see README, Web page."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode

MAX_PREVIEW_WIDTH = 4096


class WebSettings(BaseSettings):
    """The page at `/` and the resized previews of `GET /api/v1/images/{id}/preview`."""

    # Serve the page at `/` (false: `/` is a 404, as before the page existed)
    web_page_enabled: bool = True
    # The widths a preview may be asked for (comma-separated, each 16-4096): a fixed set, so
    # that an image has at most this many cached previews
    preview_widths: Annotated[list[int], NoDecode] = [64, 128, 256, 512, 1024]
    # JPEG quality of a preview (a change makes new cache entries)
    preview_jpeg_quality: int = Field(default=80, ge=1, le=95)

    @field_validator("preview_widths", mode="before")
    @classmethod
    def _widths(cls, value: object) -> object:
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("preview_widths")
    @classmethod
    def _bounded_widths(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("PREVIEW_WIDTHS needs at least one width")
        bad = [width for width in value if not 16 <= width <= MAX_PREVIEW_WIDTH]
        if bad:
            raise ValueError(f"preview widths must be 16-{MAX_PREVIEW_WIDTH}: {bad}")
        return sorted(set(value))
