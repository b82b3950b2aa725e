"""Seed 003 history and statistics schemas."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class HistoryItem(BaseModel):
    """One recorded analysis request (times in seconds, sizes in bytes and pixels)."""

    id: int
    request_type: str = Field(examples=["image"], description="image, json or url")
    route: str = Field(examples=["/forward"])
    principal: str | None = Field(description="Who asked (null once the account is erased, or anonymous)")
    processing_time: float = Field(examples=[0.523])
    input_data_size: int | None = Field(examples=[102400])
    image_width: int | None = Field(examples=[800])
    image_height: int | None = Field(examples=[600])
    status_code: int = Field(examples=[200])
    result: str | None
    error_message: str | None
    created_at: datetime


class HistoryPage(BaseModel):
    total: int
    items: list[HistoryItem]


class StatsRead(BaseModel):
    """Statistics of the matching requests. With none, `total_requests` is 0 and the rest null."""

    total_requests: int = Field(examples=[100])
    mean_processing_time: float | None = Field(examples=[0.456])
    median_processing_time: float | None = Field(examples=[0.423])
    percentile_95_processing_time: float | None = Field(examples=[0.789])
    percentile_99_processing_time: float | None = Field(examples=[1.234])
    average_input_size: float | None = Field(examples=[153600])
    average_image_width: float | None = Field(examples=[1024])
    average_image_height: float | None = Field(examples=[768])
