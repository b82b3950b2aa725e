"""FastAPI dependencies, each with an `Annotated` alias that routes list by type.

A route names exactly the services it uses, typed (`ImagesDep`, `AccountsDep`, ...; see
`service`): no route reads the service container. The caller comes from the request's `Call`
(`app.api.calls`), resolved once, by the pipeline when the route declared it
(`app.api.routing.Policy`) or here on first use; these dependencies also declare the security
schemes in the OpenAPI. Rate limits are declared with the route and counted by the pipeline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer

from app.analyzers.registry import AnalyzerRegistry
from app.api.calls import call_of, container_of
from app.composition import provider
from app.core.errors import Forbidden, Unauthorized
from app.services.accounts.erasure import AccountEraser
from app.services.accounts.logins import Logins
from app.services.accounts.principals import Principal, PrincipalResolver
from app.services.accounts.refills import Refills
from app.services.accounts.service import AccountService
from app.services.history import HistoryService
from app.services.images.catalog import ImageService
from app.services.images.previews import PreviewService
from app.services.jobs.contours import ContourJobService
from app.services.metrics_export import MetricsExport
from app.services.readiness import Readiness
from app.services.webhooks.service import WebhookService

T = TypeVar("T")

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


def service(kind: type[T], *, need_database: bool = True) -> Callable[[Request], Awaitable[T]]:
    """A dependency giving the app's one `kind` service: ServiceUnavailable (503) before the
    lifespan built the services, DatabaseUnavailable (503) while the database start-up waits for
    an unreachable server (unless `need_database` is False: readiness, metrics)."""
    get = provider(kind)

    # Dependencies are `async def`: FastAPI runs plain `def` ones in the thread pool.
    async def dependency(request: Request) -> T:
        return get(container_of(request, need_database=need_database))

    dependency.__name__ = f"get_{kind.__name__}"
    return dependency


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


async def history_admin(
    request: Request,
    principals: Annotated[PrincipalResolver, Depends(service(PrincipalResolver))],
    _token: Annotated[str | None, Security(bearer_token)],
) -> None:
    """An admin, or seed 003's static ADMIN_TOKEN in `Authorization: Bearer`."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip() and principals.is_admin_token(token.strip()):
        return
    require_admin(await principal_of(request))


UserPrincipal = Annotated[Principal, Depends(current_user)]
AdminPrincipal = Annotated[Principal, Depends(current_admin)]
HistoryAdmin = Annotated[None, Depends(history_admin)]


AccountsDep = Annotated[AccountService, Depends(service(AccountService))]
LoginsDep = Annotated[Logins, Depends(service(Logins))]
RefillsDep = Annotated[Refills, Depends(service(Refills))]
EraserDep = Annotated[AccountEraser, Depends(service(AccountEraser))]
HistoryDep = Annotated[HistoryService, Depends(service(HistoryService))]
ImagesDep = Annotated[ImageService, Depends(service(ImageService))]
PreviewsDep = Annotated[PreviewService, Depends(service(PreviewService))]
AnalyzersDep = Annotated[AnalyzerRegistry, Depends(service(AnalyzerRegistry))]
ContourJobsDep = Annotated[ContourJobService, Depends(service(ContourJobService))]
WebhooksDep = Annotated[WebhookService, Depends(service(WebhookService))]
# Served while the database is still unreachable (they report it)
ReadinessDep = Annotated[Readiness, Depends(service(Readiness, need_database=False))]
MetricsDep = Annotated[MetricsExport, Depends(service(MetricsExport, need_database=False))]
