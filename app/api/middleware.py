"""Plain ASGI middleware: request id + one log line per request (and relative redirects); a cap
on buffered bodies; history; HEAD on every GET route."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.problems import disconnected_response, error_response, problem_response
from app.api.stalls import StallGuard
from app.core.errors import RequestTimeout
from app.core.logging import request_id_var

logger = logging.getLogger("app.request")

_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def relative_location(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
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


class RequestContextMiddleware:
    """Echo or create `X-Request-ID`, log method, path, status and duration; make redirects
    relative (`relative_location`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _SAFE_REQUEST_ID.fullmatch(candidate):
                    request_id = candidate
                break
        if not request_id:
            request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        header = (b"x-request-id", request_id.encode())
        status = 500
        cache = ""
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, cache
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.get("headers", [])
                for name, value in headers:
                    if name == b"x-cache":
                        cache = " cache=" + value.decode("latin-1")
                if 300 <= status < 400:
                    headers = relative_location(list(headers))
                message["headers"] = [*headers, header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            logger.info(
                "%s %s %d %.1fms%s request_id=%s",
                scope["method"],
                scope["path"],
                status,
                (time.perf_counter() - started) * 1000,
                cache,
                request_id,
            )
            request_id_var.reset(token)


class BodyLimitMiddleware:
    """Cap request bodies that are buffered in memory (JSON, forms).

    Routes declare their own cap (`app.api.routing.body_limit`): `None` for routes that
    stream their body to disk and enforce their own, larger limits, which are passed
    through. A declared Content-Length over the cap is refused before any body is read; a
    chunked body is cut off when its running total passes the cap.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        stalls: StallGuard,
        path_limits: dict[str, int | None] | None = None,
    ) -> None:
        self.app = app
        self.limit = limit
        self.stalls = stalls
        self.path_limits = path_limits or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(scope["path"], self.limit)
        if limit is None:
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await _too_large(limit)(scope, receive, send)
                return
        # Read the (small) body here: FastAPI turns any error raised while it reads a body
        # into a generic 400, so the limit has to be decided before the app sees it.
        chunks: list[bytes] = []
        total = 0
        guarded = self.stalls.body(receive)
        while True:
            try:
                message = await guarded()
            except RequestTimeout as exc:
                await error_response(exc)(scope, receive, send)
                return
            if message["type"] != "http.request":  # the client hung up mid-body
                await disconnected_response(scope["method"], scope["path"])(scope, receive, send)
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                await _too_large(limit)(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _too_large(limit: int) -> ASGIApp:
    return problem_response(413, "payload_too_large", f"The request body exceeds {limit} bytes")


class HistoryMiddleware:
    """Record every request to an analysis route (seed 003's history), without waiting.

    Routes declare themselves (`app.api.routing.recorded`) and describe their input on
    `request.state.history` (request_type, input_data_size, image_width, image_height);
    this records the route, the caller, the status, the time taken, the result (a success's
    body, truncated) or the error (a problem's `detail`).
    """

    def __init__(self, app: ASGIApp, *, paths: frozenset[str], result_max_chars: int) -> None:
        self.app = app
        self.paths = paths
        self.result_max_chars = result_max_chars

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        body = bytearray()
        limit = max(self.result_max_chars, 4096)

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and len(body) < limit:
                body.extend(message.get("body", b"")[: limit - len(body)])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            elapsed = time.perf_counter() - started
            services = getattr(scope["app"].state, "services", None)
            if services is not None:
                services.history.record(self._row(scope, status, bytes(body), elapsed))

    def _row(self, scope: Scope, status: int, body: bytes, elapsed: float) -> dict[str, object]:
        state = scope.get("state", {})
        described = state.get("history", {})
        principal = state.get("principal")
        text = body.decode("utf-8", "replace")
        error = None
        if status >= 400:
            try:
                error = str(json.loads(text).get("detail"))
            except (ValueError, AttributeError):
                error = text[:1000] or None
        return {
            "request_type": described.get("request_type", "json"),
            "route": scope["path"],
            "principal": principal.id if principal is not None else None,
            "processing_time": elapsed,
            "input_data_size": described.get("input_data_size"),
            "image_width": described.get("image_width"),
            "image_height": described.get("image_height"),
            "status_code": status,
            "result": text[: self.result_max_chars] if status < 400 else None,
            "error_message": error,
            "created_at": datetime.now(UTC),
        }


class HeadMiddleware:
    """HEAD is GET without the body (RFC 9110 9.3.2), on every GET route: the GET handler
    answers, its status and headers (Content-Length, ETag) are sent, its body is not."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_head(message: Message) -> None:
            if message["type"] in ("http.response.body", "http.response.pathsend"):
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_head)
