"""FastAPI dependencies, each with an `Annotated` alias that routes list by type.

`principal_of` is the one authentication path: ordinary routes reach it through the
`CurrentPrincipal` dependency (which also declares the security scheme in the OpenAPI),
lean routes (`app.api.routing`) call it directly.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from starlette.requests import HTTPConnection

from app.core.errors import ServiceUnavailable
from app.core.security import authenticate
from app.services.analysis import AnalysisService
from app.services.container import ServiceContainer
from app.services.images import ImageService
from app.services.ingest import IngestService

api_key_header = APIKeyHeader(
    name="X-API-KEY",
    auto_error=False,
    description="One of the keys in the API_KEYS setting (not needed when API_KEYS is empty)",
)


def container_of(connection: HTTPConnection) -> ServiceContainer:
    """The app's services, or ServiceUnavailable before the lifespan built them."""
    container: ServiceContainer | None = getattr(connection.app.state, "services", None)
    if container is None:
        raise ServiceUnavailable("The service is starting")
    return container


def principal_of(request: Request) -> str:
    """Who is calling: an API key's principal, or anonymous when API_KEYS is empty
    (Unauthorized when a key is required and missing or wrong)."""
    return authenticate(container_of(request).settings.api_keys, request.headers.get("x-api-key"))


# Dependencies are `async def`: FastAPI runs plain `def` ones in the thread pool.
async def get_container(request: Request) -> ServiceContainer:
    """The app's services (built by the lifespan)."""
    return container_of(request)


async def current_principal(
    request: Request, _api_key: Annotated[str | None, Security(api_key_header)]
) -> str:
    """The caller's principal (see `principal_of`)."""
    return principal_of(request)


ContainerDep = Annotated[ServiceContainer, Depends(get_container)]
CurrentPrincipal = Annotated[str, Depends(current_principal)]


async def get_images(container: ContainerDep) -> ImageService:
    return container.images


async def get_ingest(container: ContainerDep) -> IngestService:
    return container.ingest


async def get_analysis(container: ContainerDep) -> AnalysisService:
    return container.analysis


ImagesDep = Annotated[ImageService, Depends(get_images)]
IngestDep = Annotated[IngestService, Depends(get_ingest)]
AnalysisDep = Annotated[AnalysisService, Depends(get_analysis)]
