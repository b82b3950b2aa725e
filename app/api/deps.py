"""FastAPI dependencies, each with an `Annotated` alias that routes list by type.

The caller comes from the request's `Call` (`app.api.calls`), resolved once, by the pipeline
when the route declared it (`app.api.routing.Policy`) or here on first use; these
dependencies also declare the security schemes in the OpenAPI. Rate limits are declared
with the route and counted by the pipeline, not here.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer

from app.api.calls import call_of, container_of
from app.composition import ServiceContainer
from app.core.errors import Forbidden, Unauthorized
from app.core.security import secrets_equal
from app.services.accounts.principals import Principal
from app.services.analysis.service import AnalysisService
from app.services.images.catalog import ImageService
from app.services.images.ingest import IngestService

api_key_header = APIKeyHeader(
    name="X-API-KEY",
    auto_error=False,
    description="One of the keys in the API_KEYS setting (not needed when API_KEYS is empty)",
)
bearer_token = OAuth2PasswordBearer(
    tokenUrl="/token",
    auto_error=False,
    description="An access token from /token, /v1/login or /api/v1/auth/login",
)


async def principal_of(request: Request) -> Principal:
    """Who is calling (see `Call.caller`)."""
    return await call_of(request).caller()


# Dependencies are `async def`: FastAPI runs plain `def` ones in the thread pool.
async def get_container(request: Request) -> ServiceContainer:
    """The app's services (built by the lifespan)."""
    return container_of(request)


async def current_principal(
    request: Request,
    _api_key: Annotated[str | None, Security(api_key_header)],
    _token: Annotated[str | None, Security(bearer_token)],
) -> Principal:
    """The caller (see `principal_of`)."""
    return await principal_of(request)


async def optional_principal(
    request: Request,
    _api_key: Annotated[str | None, Security(api_key_header)],
    _token: Annotated[str | None, Security(bearer_token)],
) -> Principal | None:
    """The caller if it sent credentials (bad ones are still 401), else None."""
    call = call_of(request)
    return await call.caller() if call.sent_credentials() else None


async def get_container_any_state(request: Request) -> ServiceContainer:
    """The app's services, even while the database is not reachable yet (readiness, metrics)."""
    return container_of(request, need_database=False)


ContainerDep = Annotated[ServiceContainer, Depends(get_container)]
AnyStateContainerDep = Annotated[ServiceContainer, Depends(get_container_any_state)]
CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]


async def current_user(principal: CurrentPrincipal) -> Principal:
    """The caller, who must be logged in (a user or an admin)."""
    if principal.user_id is None:
        raise Unauthorized("Log in first: send `Authorization: Bearer <access token>`")
    return principal


def require_admin(principal: Principal) -> Principal:
    """`principal` if an admin: 401 for a caller without credentials, 403 for anyone else."""
    if principal.is_admin:
        return principal
    if principal.kind == "anonymous":
        raise Unauthorized(
            "Log in as an admin: send `Authorization: Bearer <access token>`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    raise Forbidden("This needs an admin")


async def current_admin(principal: CurrentPrincipal) -> Principal:
    """The caller, who must be an admin (see `require_admin`)."""
    return require_admin(principal)


async def history_admin(request: Request, _token: Annotated[str | None, Security(bearer_token)]) -> None:
    """An admin, or seed 003's static ADMIN_TOKEN in `Authorization: Bearer`."""
    configured = container_of(request).settings.admin_token
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if configured is not None and scheme.lower() == "bearer" and token:
        if secrets_equal(token.strip(), configured.get_secret_value()):
            return
    require_admin(await principal_of(request))


UserPrincipal = Annotated[Principal, Depends(current_user)]
AdminPrincipal = Annotated[Principal, Depends(current_admin)]
HistoryAdmin = Annotated[None, Depends(history_admin)]


async def get_images(container: ContainerDep) -> ImageService:
    return container.images


async def get_ingest(container: ContainerDep) -> IngestService:
    return container.ingest


async def get_analysis(container: ContainerDep) -> AnalysisService:
    return container.analysis


ImagesDep = Annotated[ImageService, Depends(get_images)]
IngestDep = Annotated[IngestService, Depends(get_ingest)]
AnalysisDep = Annotated[AnalysisService, Depends(get_analysis)]
