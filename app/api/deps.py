"""FastAPI dependencies, each with an `Annotated` alias that routes list by type.

`principal_of` is the one authentication path: ordinary routes reach it through the
`CurrentPrincipal` dependency (which also declares the security schemes in the OpenAPI),
lean routes (`app.api.routing`) call it directly. The caller is remembered on the
request's state (the history recorder names it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from starlette.requests import HTTPConnection

from app.core.errors import DatabaseUnavailable, Forbidden, ServiceUnavailable, Unauthorized
from app.core.security import secrets_equal
from app.services.analysis import AnalysisService
from app.services.container import ServiceContainer
from app.services.images import ImageService
from app.services.ingest import IngestService
from app.services.principals import Principal

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


def container_of(connection: HTTPConnection, *, need_database: bool = True) -> ServiceContainer:
    """The app's services: ServiceUnavailable before the lifespan built them, DatabaseUnavailable
    while the database start-up steps wait for an unreachable server (unless `need_database` is False)."""
    container: ServiceContainer | None = getattr(connection.app.state, "services", None)
    if container is None:
        raise ServiceUnavailable("The service is starting")
    if need_database and not container.database_ready:
        raise DatabaseUnavailable("The database has not been reachable since start-up; try again later")
    return container


async def principal_of(request: Request) -> Principal:
    """Who is calling: a user or admin (bearer token), an API key, or anonymous when allowed
    (Unauthorized for bad or missing credentials)."""
    headers = request.headers
    principal = await container_of(request).principals.resolve(
        authorization=headers.get("authorization"), api_key=headers.get("x-api-key")
    )
    request.state.principal = principal
    return principal


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
    if "authorization" not in request.headers and "x-api-key" not in request.headers:
        return None
    return await principal_of(request)


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


async def limit_rate(request: Request, route_class: str, principal: Principal | None) -> None:
    """Count this request against `route_class`'s limits, per caller (not anonymous: they share
    no identity) and per client address; the quota goes into the response headers."""
    keys = [] if principal is None or principal.kind == "anonymous" else [f"p:{principal.id}"]
    keys.append(f"a:{request.client.host if request.client else '?'}")
    quota = await container_of(request).rate_limits.hit(route_class, *keys)
    if quota is not None:
        request.state.rate_limit = quota.headers()


def rate_limited(route_class: str) -> Callable[..., Awaitable[None]]:
    """A dependency applying `route_class`'s rate limits (after authentication)."""

    async def dependency(request: Request, principal: CurrentPrincipal) -> None:
        await limit_rate(request, route_class, principal)

    return dependency


async def auth_rate_limited(request: Request) -> None:
    """The `auth` class: per client address (the caller is not known yet)."""
    await limit_rate(request, "auth", None)


async def address_rate_limited(request: Request) -> None:
    """The `default` class per client address only (routes that authenticate their own way)."""
    await limit_rate(request, "default", None)


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
