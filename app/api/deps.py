"""FastAPI dependencies, each with an `Annotated` alias that routes list by type."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from app.core.security import authenticate
from app.services.ingest import ImageService
from app.services.state import Services, services_or_unavailable

api_key_header = APIKeyHeader(
    name="X-API-KEY",
    auto_error=False,
    description="One of the keys in the API_KEYS setting (not needed when API_KEYS is empty)",
)


# Dependencies are `async def`: FastAPI runs plain `def` ones in the thread pool.
async def get_services(request: Request) -> Services:
    """The app's services (built by the lifespan)."""
    return services_or_unavailable(request.app.state)


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_image_service(services: ServicesDep) -> ImageService:
    """The image (upload/read/delete) service."""
    return services.images


async def require_principal(
    services: ServicesDep, api_key: Annotated[str | None, Security(api_key_header)]
) -> str:
    """Who is calling: an API key's principal, or anonymous when API_KEYS is empty."""
    return authenticate(services.settings.api_keys, api_key)


ImageServiceDep = Annotated[ImageService, Depends(get_image_service)]
PrincipalDep = Annotated[str, Depends(require_principal)]
