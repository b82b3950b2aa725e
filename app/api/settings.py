"""The HTTP layer's settings sections, cut from `Settings` where the app is built (`app.main`).

Field names are the settings' own (env var names in lower case), so each reads as its setting.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.config import Settings


@dataclass(frozen=True)
class PipelineSettings:
    """The request pipeline (`RequestPipeline`, a route's `BodyLimit`): the buffered body cap,
    security headers, CORS, admission and the history's result length."""

    max_json_body_bytes: int
    hsts_seconds: int
    hsts_include_subdomains: bool
    cors_origins: tuple[str, ...]
    max_concurrent_requests: int
    max_concurrent_per_address: int
    admission_reserve_fraction: float
    history_result_max_chars: int

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineSettings:
        named = {name: getattr(settings, name) for name in cls.__dataclass_fields__ if name != "cors_origins"}
        return cls(cors_origins=tuple(settings.cors_origins), **named)


@dataclass(frozen=True)
class ConnectionLimits:
    """uvicorn's connections (`app.api.connections`): the head's deadline, connections per address."""

    header_read_timeout_seconds: float
    max_connections_per_address: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(settings.header_read_timeout_seconds, settings.max_connections_per_address)


@dataclass(frozen=True)
class DocsSettings:
    """What the OpenAPI document states (`app.api.openapi`): the security each route takes and
    the answers a deployment can give."""

    api_keys_set: bool  # API_KEYS is set: the API key scheme is offered
    anonymous_allowed: bool
    rate_limits_enabled: bool
    metrics_token_set: bool  # METRICS_TOKEN is set: /metrics takes it

    @classmethod
    def from_settings(cls, settings: Settings) -> DocsSettings:
        return cls(
            api_keys_set=bool(settings.api_keys),
            anonymous_allowed=settings.anonymous_allowed,
            rate_limits_enabled=settings.rate_limits_enabled,
            metrics_token_set=settings.metrics_token is not None,
        )
