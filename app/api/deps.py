"""FastAPI dependencies, each with an `Annotated` alias that routes list by type."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from app.core.config import Settings
from app.core.errors import ServiceUnavailable, Unauthorized
from app.core.security import ANONYMOUS, match_api_key
from app.services.analysis import AnalysisService
from app.services.ingest import ImageService
from app.services.state import Services

api_key_header = APIKeyHeader(
    name="X-API-KEY",
    auto_error=False,
    description="One of the keys in the API_KEYS setting (not needed when API_KEYS is empty)",
)


def get_services(request: Request) -> Services:
    """The app's services (built by the lifespan)."""
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None:
        raise ServiceUnavailable("The service is starting")
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_settings_dep(services: ServicesDep) -> Settings:
    """The running app's settings."""
    return services.settings


def get_image_service(services: ServicesDep) -> ImageService:
    """The image (upload/read/delete) service."""
    return services.images


def get_analysis_service(services: ServicesDep) -> AnalysisService:
    """The analysis service."""
    return services.analysis


def require_principal(services: ServicesDep, api_key: Annotated[str | None, Security(api_key_header)]) -> str:
    """Who is calling: an API key's principal, or anonymous when API_KEYS is empty."""
    keys = services.settings.api_keys
    if not keys:
        return ANONYMOUS
    principal = match_api_key(api_key, keys)
    if principal is None:
        raise Unauthorized(headers={"WWW-Authenticate": "ApiKey"})
    return principal


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
ImageServiceDep = Annotated[ImageService, Depends(get_image_service)]
AnalysisServiceDep = Annotated[AnalysisService, Depends(get_analysis_service)]
PrincipalDep = Annotated[str, Depends(require_principal)]
