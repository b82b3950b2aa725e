"""The request pipeline: the one layer every HTTP request passes before its route.

Its steps, outermost first (`RequestPipeline.__call__` runs them in this order):

1. **request id and access log**: echo a safe `X-Request-ID` or make one; one log line per
   request (method, path, status, duration, cache); absolute redirects made relative
   (`relative_location`).
2. **response headers**: every response leaves through one `send` that appends, once, the
   security headers (`app.api.security_headers`; docs pages get their own CSP), the CORS
   headers (`CORS_ORIGINS`, Starlette's CORS rules; a preflight is answered here), the
   caller's `RateLimit` headers and the request id; HEAD answers drop the body.
3. **admission**: connection caps shed load at once with 503 (`app.api.traffic`); request
   duration metrics by route template.
4. **route policy**: the route is matched (paths with parameters too) and its `Policy`
   (`app.api.routing`) applied: a body read into memory under its cap (413, 408 for a
   stalled body), the caller authenticated, the route's rate limit counted (429).
5. **dispatch**: a lean route's handler is called here; any other request goes on to
   FastAPI (its exception handlers and router).
6. **history**: a recorded route's request is written to the history (seed 003) when done,
   with the route's description of it (returned in its `Reply`, or the policy's for a
   failure), the caller, the status, the time taken, the result or the error.

What a route knows travels explicitly: the caller and the quota in the request's `Call`
(`app.api.calls`), which the route receives; the description in the handler's `Reply`.
Outside the pipeline are only Starlette's own outermost layer (a 500 for an unhandled
error) and FastAPI's exception layer in front of its router (for non-lean routes).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urlsplit

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.calls import SCOPE_KEY, Call
from app.api.problems import problem_for
from app.api.routing import (
    OPEN,
    DeclaredRouter,
    Described,
    LeanHandler,
    Policy,
    content_length,
    lean_handler_of,
    policy_of,
    read_limited,
)
from app.api.security_headers import DOCS_PAGES, SecurityHeaders
from app.api.settings import PipelineSettings
from app.api.stalls import StallGuard
from app.api.traffic import Admission
from app.core import metrics
from app.core.ids import random_bytes
from app.core.logging import request_id_var

logger = logging.getLogger("app.request")

RawHeaders = list[tuple[bytes, bytes]]
_DURATIONS: dict[tuple[str, str, int], Any] = {}  # REQUEST_SECONDS children of declared routes
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
EXPOSED_HEADERS = [
    "Location",
    "X-Cache",
    "X-Request-ID",
    "ETag",
    "Idempotent-Replayed",
    "Retry-After",
    "RateLimit",
    "RateLimit-Policy",
]


def relative_location(headers: RawHeaders) -> RawHeaders:
    """The headers with an absolute `Location` made relative (RFC 9110 allows it).

    Starlette's trailing-slash redirect builds its URL from the request's Host header, so a
    forged Host would come back in the Location (web-cache poisoning, an open redirect); the
    service never redirects to another host, so the path, query and fragment are all it needs.
    """
    out = []
    for name, value in headers:
        if name == b"location":
            parts = urlsplit(value)
            if parts.scheme or parts.netloc:
                value = b"/" + parts.path.lstrip(b"/")  # never "//host": a network-path reference
                value += b"?" + parts.query if parts.query else b""
                value += b"#" + parts.fragment if parts.fragment else b""
        out.append((name, value))
    return out


class RouteEntry:
    """A route as the pipeline serves it: its template, methods, policy and lean handler."""

    __slots__ = ("route", "methods", "policy", "body_limit", "handler")

    def __init__(self, route: APIRoute, policy: Policy, settings: PipelineSettings) -> None:
        self.route = route
        self.methods = frozenset(route.methods or ())
        self.policy = policy
        self.body_limit = policy.body_limit(settings)
        self.handler: LeanHandler | None = lean_handler_of(route.endpoint)


class RouteTable:
    """Every declared route by path: exact paths by dict, paths with parameters by pattern."""

    def __init__(self, routers: Iterable[APIRouter], settings: PipelineSettings) -> None:
        self.exact: dict[str, list[RouteEntry]] = {}
        self.patterns: list[RouteEntry] = []
        for router in routers:
            default = router.policy if isinstance(router, DeclaredRouter) else OPEN
            for route in router.routes:
                if not isinstance(route, APIRoute):
                    continue
                entry = RouteEntry(route, policy_of(route.endpoint, default), settings)
                if route.param_convertors:
                    self.patterns.append(entry)
                else:
                    self.exact.setdefault(route.path, []).append(entry)

    def match(self, path: str, method: str) -> RouteEntry | None:
        """The route serving `method` at `path` (None: unknown, or the method is not allowed)."""
        for entry in self.exact.get(path, ()):
            if method in entry.methods:
                return entry
        if path in self.exact:
            return None
        for entry in self.patterns:
            if method in entry.methods and entry.route.path_regex.match(path):
                return entry
        return None


class RequestPipeline:
    """The one ASGI layer in front of FastAPI's router (see the module for its steps)."""

    def __init__(
        self, app: ASGIApp, *, settings: PipelineSettings, routers: Iterable[APIRouter], stalls: StallGuard
    ) -> None:
        self.app = app
        self.stalls = stalls
        self.routes = RouteTable(routers, settings)
        self.default_body_limit = OPEN.body_limit(settings)
        self.security = SecurityHeaders(
            hsts_seconds=settings.hsts_seconds, hsts_include_subdomains=settings.hsts_include_subdomains
        )
        self.cors = CORSMiddleware(
            app,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=EXPOSED_HEADERS,
        )
        self.admission = Admission(
            max_concurrent=settings.max_concurrent_requests,
            max_per_address=settings.max_concurrent_per_address,
            reserve_fraction=settings.admission_reserve_fraction,
        )
        self.history_max_chars = settings.history_result_max_chars

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method: str = scope["method"]
        path: str = scope["path"]
        head = method == "HEAD"
        # 1. request id
        request_id = origin = preflight = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                request_id = candidate if _SAFE_REQUEST_ID.fullmatch(candidate) else None
            elif name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"access-control-request-method":
                preflight = True
        request_id = request_id or random_bytes(16).hex()  # as random as a UUID4's hex, ~4 µs cheaper
        token = request_id_var.set(request_id)
        call = Call(Request(scope, receive, send))
        scope[SCOPE_KEY] = call
        entry = self.routes.match(path, "GET" if head else method)
        policy = entry.policy if entry is not None else OPEN
        recording = policy.history is not None
        status = 500
        cache = ""
        captured = bytearray()
        capture_max = max(self.history_max_chars, 4096)
        outgoing = self.security.docs_page(send) if path in DOCS_PAGES else send
        docs_page = outgoing is not send
        cors_simple = True  # a preflight answer carries the preflight headers only

        # 2. response headers: one `send` for every response of this request
        async def respond(message: Message) -> None:
            nonlocal status, cache
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                has_csp = has_cache_control = has_vary = False
                for name, value in headers:
                    if name == b"x-cache":
                        cache = " cache=" + value.decode("latin-1")
                    elif name == b"content-security-policy":
                        has_csp = True
                    elif name == b"cache-control":
                        has_cache_control = True
                    elif name == b"vary":
                        has_vary = True
                if 300 <= status < 400:
                    headers = relative_location(headers)
                quota = call.quota
                if quota is not None:
                    headers += [(k.lower().encode(), v.encode()) for k, v in quota.headers().items()]
                if cors_simple:
                    if origin is None and not has_vary:
                        headers.append((b"vary", b"Origin"))
                    else:
                        headers = self._cors_headers(headers, origin)
                headers.append((b"x-request-id", request_id.encode()))
                if not docs_page:
                    headers += self.security.for_response(path, has_csp, has_cache_control)
                message["headers"] = headers
            elif kind == "http.response.body" and recording and len(captured) < capture_max:
                captured.extend(message.get("body", b"")[: capture_max - len(captured)])
            if head and kind in ("http.response.body", "http.response.pathsend"):
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await outgoing(message)

        try:
            if origin is not None and preflight and method == "OPTIONS":  # CORS preflight
                cors_simple = False
                await self.cors.preflight_response(request_headers=Headers(scope=scope))(
                    scope, receive, respond
                )
                return
            # 3. admission
            address = (scope.get("client") or ("?", 0))[0]
            refusal = self.admission.admit(path, address)
            if refusal is not None:
                await refusal(scope, receive, respond)
                return
            described: Described | None = None
            try:
                described = await self._serve(scope, receive, respond, call, entry, head)
            finally:
                self._duration(entry, scope, method, status).observe(time.perf_counter() - started)
                self.admission.leave(address)
                if recording and entry is not None:  # 6. history
                    self._record(
                        call, entry, described, status, bytes(captured), time.perf_counter() - started
                    )
        finally:
            logger.info(
                "%s %s %d %.1fms%s request_id=%s",
                method,
                path,
                status,
                (time.perf_counter() - started) * 1000,
                cache,
                request_id,
            )
            request_id_var.reset(token)

    async def _serve(
        self, scope: Scope, receive: Receive, respond: Send, call: Call, entry: RouteEntry | None, head: bool
    ) -> Described | None:
        """4. the route's policy, 5. dispatch; the lean handler's description of the request."""
        if head:
            scope["method"] = "GET"  # HEAD is GET without the body (RFC 9110 9.3.2), on every GET route
        policy = entry.policy if entry is not None else OPEN
        limit = entry.body_limit if entry is not None else self.default_body_limit
        try:
            if limit is not None:
                # Read here, not in the route, because FastAPI turns any error raised while it
                # reads a body into a 400 (this one is a 413, a 408 or a hang-up).
                declared = content_length(call.request)
                call.body = await read_limited(self.stalls.body(receive), declared, limit)
                receive = _replay(call.body, receive)
            if policy.authenticate:
                await call.caller()
            if policy.rate_limit is not None:
                await call.limit(policy.rate_limit, per_caller=policy.per_caller)
            if entry is None or entry.handler is None:
                response = None
            else:
                scope["route"] = entry.route
                reply = await entry.handler(call)
                response = reply.response
                if reply.described is not None:
                    await response(scope, receive, respond)
                    return reply.described
        except Exception as exc:
            response = problem_for(call.request, exc)
        if response is None:
            await self.app(scope, receive, respond)
        else:
            await response(scope, receive, respond)
        return None

    @staticmethod
    def _duration(entry: RouteEntry | None, scope: Scope, method: str, status: int) -> Any:
        """The request-duration histogram's child for this route, method and status; a declared
        route's are kept (`labels` costs a lock, a tuple and a str per request). Bounded: the
        declared routes, the methods they serve (and HEAD) and the statuses they answer."""
        if entry is None:
            return metrics.REQUEST_SECONDS.labels(_template(scope), method, str(status))
        key = (entry.route.path, method, status)
        child = _DURATIONS.get(key)
        if child is None:
            child = _DURATIONS[key] = metrics.REQUEST_SECONDS.labels(entry.route.path, method, str(status))
        return child

    def _cors_headers(
        self, headers: list[tuple[bytes, bytes]], origin: str | None
    ) -> list[tuple[bytes, bytes]]:
        """Starlette's CORS headers of a simple (not preflight) response."""
        message: dict[str, Any] = {"headers": headers}
        out = MutableHeaders(scope=message)
        cors = self.cors
        if origin is not None:
            out.update(cors.simple_headers)
        if origin is not None and cors.allow_all_origins and cors.allow_credentials:
            cors.allow_explicit_origin(out, origin)
        elif origin is not None and not cors.allow_all_origins and cors.is_allowed_origin(origin=origin):
            cors.allow_explicit_origin(out, origin)
        else:
            out["Vary"] = ", ".join([*out.getlist("Vary"), "Origin"])
        return cast(RawHeaders, message["headers"])

    def _record(
        self,
        call: Call,
        entry: RouteEntry,
        described: Described | None,
        status: int,
        body: bytes,
        elapsed: float,
    ) -> None:
        services = getattr(call.request.app.state, "services", None)
        if services is None:
            return
        if described is None:
            describe = entry.policy.history
            described = describe(call.request) if describe is not None else Described()
        text = body.decode("utf-8", "replace")
        error = None
        if status >= 400:
            try:
                error = str(json.loads(text).get("detail"))
            except (ValueError, AttributeError):
                error = text[:1000] or None
        principal = call.principal
        services.history.record(
            {
                "request_type": described.request_type,
                "route": call.request.scope["path"],
                "principal": principal.id if principal is not None else None,
                "processing_time": elapsed,
                "input_data_size": described.input_data_size,
                "image_width": described.image_width,
                "image_height": described.image_height,
                "status_code": status,
                "result": text[: self.history_max_chars] if status < 400 else None,
                "error_message": error,
                "created_at": datetime.now(UTC),
            }
        )


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` that gives the buffered body once, then the server's next messages."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _template(scope: Scope) -> str:
    """The route template FastAPI's router matched (the docs pages), else `unmatched`."""
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"
