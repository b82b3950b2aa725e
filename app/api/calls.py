"""One request as the pipeline and its route see it: the app's services, the caller (resolved
once), where the caller stands against rate limits.

`app.api.pipeline` makes a `Call` for every request and resolves what the route declared
(`app.api.routing.Policy`): the caller, the route's rate-limit class. A route receives the
same `Call`: a lean handler as its argument, a FastAPI endpoint through the dependencies of
`app.api.deps` (`call_of`). Routes only read it or ask it for more (`limit`, for a limit
that depends on the work, such as an analysis that is not cached); the quota it holds is
what the pipeline sends as `RateLimit` headers. Nothing is handed over in `request.state`.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection, Request
from starlette.types import Scope

from app.composition import ServiceContainer
from app.core.errors import DatabaseUnavailable, ServiceUnavailable
from app.services.accounts.principals import Principal
from app.services.rate_limits import Quota

SCOPE_KEY = "app.call"  # the pipeline's Call in the ASGI scope (an ASGI extension key)


def container_of(connection: HTTPConnection, *, need_database: bool = True) -> ServiceContainer:
    """The app's services: ServiceUnavailable before the lifespan built them, DatabaseUnavailable
    while the database start-up steps wait for an unreachable server (unless `need_database` is False)."""
    container: ServiceContainer | None = getattr(connection.app.state, "services", None)
    if container is None:
        raise ServiceUnavailable("The service is starting")
    if need_database and not container.database_ready:
        raise DatabaseUnavailable("The database has not been reachable since start-up; try again later")
    return container


class Call:
    """One request: its caller (resolved on first use, then kept) and its rate-limit quota."""

    __slots__ = ("request", "principal", "quota", "body", "_services")

    def __init__(self, request: Request) -> None:
        self.request = request
        self._services: ServiceContainer | None = None
        self.principal: Principal | None = None
        self.quota: Quota | None = None  # the last limit counted (the RateLimit headers)
        self.body: bytes | None = None  # the body, when the route declared a buffered one

    @property
    def services(self) -> ServiceContainer:
        """The app's services (see `container_of`), for the pipeline and `bind_services`: a
        route receives the services it declared, never the container. Found once per request."""
        if self._services is None:
            self._services = container_of(self.request)
        return self._services

    def sent_credentials(self) -> bool:
        """Whether the request carries an API key or an Authorization header."""
        headers = self.request.headers
        return "authorization" in headers or "x-api-key" in headers

    async def caller(self) -> Principal:
        """Who is calling: a user or admin (bearer token), an API key, or anonymous when allowed
        (Unauthorized for bad or missing credentials). Resolved once per request."""
        if self.principal is None:
            headers = self.request.headers
            self.principal = await self.services.principals.resolve(
                authorization=headers.get("authorization"), api_key=headers.get("x-api-key")
            )
        return self.principal

    async def limit(self, route_class: str, *, per_caller: bool = True) -> None:
        """Count this request against `route_class`'s limits, per caller (when `per_caller` and
        the caller is known and not anonymous: anonymous callers share no identity) and per
        client address; TooManyRequests (429) when one is full."""
        principal = self.principal if per_caller else None
        keys = [] if principal is None or principal.kind == "anonymous" else [f"p:{principal.id}"]
        client = self.request.client
        keys.append(f"a:{client.host if client else '?'}")
        quota = await self.services.rate_limits.hit(route_class, *keys)
        if quota is not None:
            self.quota = quota


def call_of(connection: HTTPConnection) -> Call:
    """The pipeline's Call of this request (a bare one outside the pipeline, e.g. a websocket)."""
    scope: Scope = connection.scope
    call = scope.get(SCOPE_KEY)
    if call is None:
        call = scope[SCOPE_KEY] = Call(Request(scope))
    return call
