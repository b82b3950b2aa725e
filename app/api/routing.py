"""How a route is written: an ordinary FastAPI route, or a lean route where measured.

Every route is an ordinary FastAPI route with `Annotated` dependencies, except the two hot
paths (upload and analyze), declared with `@lean_route`: FastAPI documents them from a
generated endpoint (security, headers, request body, responses), but requests go straight
to the handler, `async (Request) -> Response`, skipping dependency injection and the
response-model pass, which cost more than the work of a cached analysis or a small upload
(see README, Benchmark). Both kinds authenticate through `deps.principal_of` and raise the
same domain errors, mapped in one place (`app.api.problems`).

Request bodies: `BodyLimitMiddleware` buffers and caps every body at `MAX_JSON_BODY_BYTES`,
unless the route declares otherwise with `@body_limit(...)`: `None` for routes that stream
their body and enforce their own limits (uploads), or a larger cap (seed 004's JSON jobs).
"""

from __future__ import annotations

import asyncio
import copy
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Annotated, Any, ClassVar, TypeVar, cast

from fastapi import APIRouter, Header
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.deps import CurrentPrincipal
from app.api.problems import problem_for
from app.api.stalls import BodyStream
from app.core.config import Settings
from app.core.errors import PayloadTooLarge

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
BodyLimit = Callable[[Settings], int | None]
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
T = TypeVar("T")

_BODY_LIMIT_ATTR = "__body_limit__"
_RECORDED_ATTR = "__recorded__"


def body_limit(limit: BodyLimit) -> Callable[[Endpoint], Endpoint]:
    """Declare an endpoint's request body cap from settings (None: it streams its body itself)."""

    def mark(endpoint: Endpoint) -> Endpoint:
        setattr(endpoint, _BODY_LIMIT_ATTR, limit)
        return endpoint

    return mark


def streams_body(endpoint: Endpoint) -> Endpoint:
    """Declare that an endpoint streams its body (`request.stream()`) and enforces its own limits."""
    return body_limit(lambda _settings: None)(endpoint)


def route_body_limits(routers: Iterable[APIRouter], settings: Settings) -> dict[str, int | None]:
    """Path -> body cap of every route that declared one."""
    limits: dict[str, int | None] = {}
    for router in routers:
        for route in router.routes:
            limit = getattr(getattr(route, "endpoint", None), _BODY_LIMIT_ATTR, None)
            if limit is not None and isinstance(route, APIRoute):
                limits[route.path] = limit(settings)
    return limits


def recorded(endpoint: Endpoint) -> Endpoint:
    """Declare an analysis route: each request is recorded in the history (seed 003)."""
    setattr(endpoint, _RECORDED_ATTR, True)
    return endpoint


def recorded_paths(routers: Iterable[APIRouter]) -> frozenset[str]:
    """The paths of every route declared `@recorded`."""
    return frozenset(
        route.path
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute) and getattr(route.endpoint, _RECORDED_ATTR, False)
    )


def content_length(request: Request) -> int | None:
    """The declared Content-Length, or None when absent or not a number."""
    value = request.headers.get("content-length")
    return int(value) if value is not None and value.isascii() and value.isdigit() else None


class LeanRoute(APIRoute):
    """An APIRoute whose requests go straight to its class's `handler`."""

    handler: ClassVar[Handler]

    def get_route_handler(self) -> Handler:
        return type(self).handler


def _documented_endpoint(
    handler: Handler, body: type[BaseModel] | None, headers: Mapping[str, str]
) -> Callable[..., Any]:
    """An endpoint whose signature tells FastAPI what to document; it is never called."""
    params = [inspect.Parameter("principal", inspect.Parameter.KEYWORD_ONLY, annotation=CurrentPrincipal)]
    if body is not None:
        params.append(inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=body))
    for name, description in headers.items():
        annotation = Annotated[str | None, Header(alias=name, description=description)]
        python_name = name.lower().replace("-", "_")
        params.append(
            inspect.Parameter(
                python_name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=None
            )
        )

    async def endpoint(**_: Any) -> None:
        raise AssertionError(f"{handler.__name__} serves this route")  # pragma: no cover

    endpoint.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


def lean_route(
    router: APIRouter,
    paths: Sequence[tuple[str, str, str]],
    *,
    methods: Sequence[str] = ("POST",),
    body: type[BaseModel] | None = None,
    headers: Mapping[str, str] | None = None,
    streams: bool = False,
    record: bool = False,
    **route_options: Any,
) -> Callable[[Handler], Handler]:
    """Serve `handler` at each (path, summary, operation_id), documented as if FastAPI served it.

    `body`: the JSON request model to document (the handler parses it itself); `headers`:
    request headers to document (name -> description); `streams`: the handler reads the body
    as a stream (no buffering cap); `record`: requests go into the history. Other options
    (status_code, response_model, responses, tags, openapi_extra) are `add_api_route`'s.
    """

    def declare(handler: Handler) -> Handler:
        endpoint = _documented_endpoint(handler, body, headers or {})
        endpoint.__lean_handler__ = handler  # type: ignore[attr-defined]
        if streams:
            streams_body(endpoint)
        if record:
            recorded(endpoint)
        route_class = type(f"LeanRoute[{handler.__name__}]", (LeanRoute,), {"handler": staticmethod(handler)})
        for path, summary, operation_id in paths:
            router.add_api_route(
                path,
                endpoint,
                methods=list(methods),
                summary=summary,
                operation_id=operation_id,
                route_class_override=route_class,
                **route_options,
            )
        return handler

    return declare


def multipart_body(properties: dict[str, dict[str, Any]], required: list[str]) -> dict[str, Any]:
    """An OpenAPI `requestBody` for a multipart form read by hand (Swagger UI shows a file
    picker for `{"type": "string", "format": "binary"}` fields)."""
    schema = {"type": "object", "required": required, "properties": properties}
    return {"required": True, "content": {"multipart/form-data": {"schema": schema}}}


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON Schema with its `$defs` inlined (for a hand-written `requestBody`)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(copy.deepcopy(defs[ref.removeprefix("#/$defs/")]))
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    result: dict[str, Any] = inline(schema)
    return result


def body_stream(request: Request) -> BodyStream:
    """The request body as it arrives (see `BodyStream`), under the app's stall guard."""
    return BodyStream(request.receive, request.app.state.stalls)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole (small) body; PayloadTooLarge past `limit` bytes (at once if declared)."""
    declared = content_length(request)
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"The request body exceeds {limit} bytes")
    chunks: list[bytes] = []
    total = 0
    async for chunk in body_stream(request):
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"The request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def until_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work` (once the request body has been read), cancelled if the client hangs up:
    a client that has gone does not keep its analysis queued (see `app.services.scheduler`);
    ClientDisconnect then (logged as such, not as an error)."""
    task = asyncio.ensure_future(work)
    gone = False

    async def watch() -> None:
        nonlocal gone
        # Once the body is read, the server's next message is the disconnect (a server that
        # sends anything else is not watched further: never spin on it).
        if (await request.receive())["type"] == "http.disconnect":
            gone = True
            task.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        return await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if gone and (current is None or not current.cancelling()):  # not a shutdown's cancel
            raise ClientDisconnect() from None
        raise
    finally:
        watcher.cancel()


class LeanDispatchMiddleware:
    """Serve lean routes from here, before routing and FastAPI's exception layers: for a
    cached analysis or a small upload those cost more than the work (see README, Benchmark).
    CORS wraps this layer. Errors get the app's one mapping (`app.api.problems.problem_for`).
    """

    def __init__(self, app: ASGIApp, *, routers: Iterable[APIRouter]) -> None:
        self.app = app
        self.routes: dict[str, tuple[APIRoute, Handler]] = {}
        for router in routers:
            for route in router.routes:
                handler = getattr(getattr(route, "endpoint", None), "__lean_handler__", None)
                if handler is not None and isinstance(route, APIRoute):
                    self.routes[route.path] = (route, handler)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        # APIRoute always sets `methods` (GET by default); Starlette's Route types it Optional.
        if found is None or scope["method"] not in cast(set[str], found[0].methods):
            await self.app(scope, receive, send)
            return
        scope["route"] = found[0]
        request = Request(scope, receive, send)
        try:
            response = await found[1](request)
        except Exception as exc:
            response = problem_for(request, exc)
        await response(scope, receive, send)
