"""How a route is declared: what the pipeline does for it, and how it is served.

Every route has one `Policy`: whether its caller is authenticated before it runs, its
rate-limit class (counted per caller and address, or per address only), the cap of a body
read into memory (or none: the route streams its body and enforces its own limits), and
whether its requests go into the history (seed 003). A router declares its routes' policy
(`DeclaredRouter`); a route may declare its own (`declare`, or `lean_route`'s `policy`).
`app.api.pipeline` reads these declarations, for paths with parameters too.

Routes are ordinary FastAPI routes with `Annotated` dependencies, except the hot paths and
the recorded ones, declared with `@lean_route`: FastAPI documents them from a generated
endpoint (security, headers, query, request body, responses), but the pipeline calls the
handler itself, `async (Call, *services) -> Reply`, skipping routing, dependency injection and
the response-model pass, which cost more than the work of a cached analysis or a small upload
(see README, Benchmark). That is their one dispatch path: the generated endpoint is never
called. A lean handler declares the services it uses as typed parameters after the `Call`
(`ingest: IngestService`), looked up once at registration (`bind_services`), as ordinary
routes declare them with `app.api.deps`' aliases. Both kinds raise the same domain errors,
mapped in one place (`app.api.problems`).
"""

from __future__ import annotations

import asyncio
import copy
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, get_type_hints

from fastapi import APIRouter, Header
from pydantic import BaseModel
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive

from app.api.calls import Call
from app.api.deps import CurrentPrincipal
from app.api.settings import PipelineSettings
from app.api.stalls import BodyStream
from app.composition import provider
from app.core.errors import PayloadTooLarge

BodyLimit = Callable[[PipelineSettings], int | None]
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Described:
    """What a recorded request was, for its history row (seed 003's columns)."""

    request_type: str = "json"  # json, image or url
    input_data_size: int | None = None
    image_width: int | None = None
    image_height: int | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """A lean handler's answer: the response, and what the request was (recorded routes)."""

    response: Response
    described: Described | None = None


LeanHandler = Callable[[Call], Awaitable[Reply]]
ServiceHandler = Callable[..., Awaitable[Reply]]  # async (Call, *services) -> Reply
Describe = Callable[[Request], Described]


def json_body_limit(settings: PipelineSettings) -> int | None:
    """The default: a body is read into memory up to MAX_JSON_BODY_BYTES."""
    return settings.max_json_body_bytes


def streamed(_settings: PipelineSettings) -> int | None:
    """The route streams its body (`body_stream`) and enforces its own limits."""
    return None


def described_as_json(_request: Request) -> Described:
    """A failed request's history description when the route declares none."""
    return Described()


@dataclass(frozen=True)
class Policy:
    """What the pipeline does for a route (see the module)."""

    authenticate: bool = False  # resolve the caller first (401 for bad or missing credentials)
    rate_limit: str | None = None  # the route class counted before the route runs
    per_caller: bool = True  # count the limit per caller and address (False: per address)
    body_limit: BodyLimit = json_body_limit
    history: Describe | None = None  # recorded: the description of a request that failed


OPEN = Policy()  # health, docs, unknown paths


class DeclaredRouter(APIRouter):
    """An APIRouter whose routes share one `Policy` (unless a route declares its own)."""

    def __init__(self, policy: Policy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.policy = policy


def declare(policy: Policy) -> Callable[[Endpoint], Endpoint]:
    """Give one endpoint its own policy (instead of its router's)."""

    def mark(endpoint: Endpoint) -> Endpoint:
        endpoint.__policy__ = policy  # type: ignore[attr-defined]
        return endpoint

    return mark


def policy_of(endpoint: Any, default: Policy) -> Policy:
    """The policy an endpoint declared, else `default` (its router's)."""
    found = getattr(endpoint, "__policy__", None)
    return found if isinstance(found, Policy) else default


def lean_handler_of(endpoint: Any) -> LeanHandler | None:
    """The handler that serves a lean route's documented endpoint (None: an ordinary route)."""
    return getattr(endpoint, "__lean_handler__", None)


def content_length(request: Request) -> int | None:
    """The declared Content-Length (the first, as Starlette's `Headers.get` reads it), or None
    when absent or not a number. Read from the raw headers: the pipeline asks it of every
    request, and building `request.headers` for it cost more than the rest of a bodiless read."""
    for name, value in request.scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None  # bytes.isdigit: ASCII digits only
    return None


def bind_services(handler: ServiceHandler) -> LeanHandler:
    """`handler` as the pipeline calls it, `(Call) -> Reply`: each parameter after the `Call` gets
    the app's service of its annotated type (TypeError at registration for a type no service has)."""
    hints = get_type_hints(handler)
    names = list(inspect.signature(handler).parameters)[1:]
    getters = tuple(provider(hints[name]) for name in names)
    if not getters:
        return handler

    def served(call: Call) -> Awaitable[Reply]:
        services = call.services
        return handler(call, *[get(services) for get in getters])

    served.__name__ = handler.__name__
    served.__doc__ = handler.__doc__
    return served


def _documented_endpoint(
    handler: ServiceHandler,
    body: type[BaseModel] | None,
    headers: Mapping[str, str],
    query: Mapping[str, tuple[Any, Any]],
) -> Callable[..., Any]:
    """An endpoint whose signature tells FastAPI what to document; it is never called."""
    params = [inspect.Parameter("principal", inspect.Parameter.KEYWORD_ONLY, annotation=CurrentPrincipal)]
    if body is not None:
        params.append(inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=body))
    for name, (annotation, default) in query.items():
        params.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)
        )
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
    policy: Policy,
    methods: Sequence[str] = ("POST",),
    body: type[BaseModel] | None = None,
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, tuple[Any, Any]] | None = None,
    **route_options: Any,
) -> Callable[[ServiceHandler], ServiceHandler]:
    """Serve `handler` at each (path, summary, operation_id) under `policy`, documented as if
    FastAPI served it, its services given by type (`bind_services`).

    `body`: the JSON request model to document (a buffered body is in `Call.body`, parsed
    by the handler); `headers`: request headers to document (name -> description); `query`:
    query parameters to document (name -> (annotation, default)). Other options
    (status_code, response_model, responses, tags, openapi_extra) are `add_api_route`'s.
    """

    def register(handler: ServiceHandler) -> ServiceHandler:
        endpoint = _documented_endpoint(handler, body, headers or {}, query or {})
        endpoint.__lean_handler__ = bind_services(handler)  # type: ignore[attr-defined]
        declare(policy)(endpoint)
        for path, summary, operation_id in paths:
            router.add_api_route(
                path,
                endpoint,
                methods=list(methods),
                summary=summary,
                operation_id=operation_id,
                **route_options,
            )
        return handler

    return register


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


class BodyBuffer:
    """A body read whole, chunk by chunk, at most `limit` bytes (PayloadTooLarge past it).

    One chunk (the usual small body) is kept as it came; more go into one bytearray, so that
    a body sent a byte at a time costs about its size, not an object per chunk (~40 bytes for
    each byte, which a cap counting bytes would not see).
    """

    __slots__ = ("limit", "first", "rest", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.first = b""
        self.rest: bytearray | None = None
        self.size = 0

    def add(self, chunk: bytes) -> None:
        """Append `chunk`; PayloadTooLarge once the body passes `limit`."""
        self.size += len(chunk)
        if self.size > self.limit:
            raise PayloadTooLarge(f"The request body exceeds {self.limit} bytes")
        if self.rest is not None:
            self.rest += chunk
        elif not self.first:
            self.first = chunk
        elif chunk:
            self.rest = bytearray(self.first)
            self.rest += chunk

    def whole(self) -> bytes:
        """The body so far, as bytes."""
        return self.first if self.rest is None else bytes(self.rest)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole (small) body under the app's stall guard (see `read_limited`)."""
    return await read_limited(request.app.state.stalls.body(request.receive), content_length(request), limit)


async def read_limited(receive: Receive, declared: int | None, limit: int) -> bytes:
    """The whole body from `receive` (under a stall guard: RequestTimeout when it stalls), at
    most `limit` bytes: PayloadTooLarge past it, at once when the `declared` length is over it;
    ClientDisconnect when the client hangs up mid-body."""
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"The request body exceeds {limit} bytes")
    body = BodyBuffer(limit)
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        body.add(message.get("body", b""))
        if not message.get("more_body", False):
            return body.whole()


async def until_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work` (once the request body has been read), cancelled if the client hangs up:
    a client that has gone does not keep its analysis queued (see `app.services.analysis.scheduler`);
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
