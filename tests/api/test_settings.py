"""app.api.settings: the HTTP layer's sections follow their env vars."""

from __future__ import annotations

import pytest

from app.api.routing import json_body_limit, streamed
from app.api.settings import ConnectionLimits, DocsSettings, PipelineSettings
from app.core.config import Settings


def test_the_sections_follow_their_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "MAX_JSON_BODY_BYTES": "4096",
        "HSTS_SECONDS": "600",
        "CORS_ORIGINS": "https://a.example,https://b.example",
        "MAX_CONCURRENT_REQUESTS": "9",
        "ADMISSION_RESERVE_FRACTION": "0.5",
        "HISTORY_RESULT_MAX_CHARS": "10",
        "HEADER_READ_TIMEOUT_SECONDS": "3",
        "MAX_CONNECTIONS_PER_ADDRESS": "4",
        "API_KEYS": "k1",
        "RATE_LIMITS_ENABLED": "false",
        "METRICS_TOKEN": "t",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)
    pipeline = PipelineSettings.from_settings(settings)
    assert pipeline.cors_origins == ("https://a.example", "https://b.example")
    assert (pipeline.hsts_seconds, pipeline.max_concurrent_requests, pipeline.admission_reserve_fraction) == (
        600,
        9,
        0.5,
    )
    assert pipeline.history_result_max_chars == 10
    # a route's body limit is read from the pipeline's section
    assert (json_body_limit(pipeline), streamed(pipeline)) == (4096, None)
    assert ConnectionLimits.from_settings(settings) == ConnectionLimits(3.0, 4)
    assert DocsSettings.from_settings(settings) == DocsSettings(
        api_keys_set=True, anonymous_allowed=False, rate_limits_enabled=False, metrics_token_set=True
    )


def test_without_keys_anonymous_calls_are_documented_as_allowed() -> None:
    docs = DocsSettings.from_settings(Settings(_env_file=None, api_keys=[]))
    assert (docs.api_keys_set, docs.anonymous_allowed, docs.metrics_token_set) == (False, True, False)
