"""Lean routes for hot paths: documented by FastAPI, served by a plain ASGI handler.

FastAPI builds the OpenAPI operation (parameters, request body, responses, security)
from the route's `endpoint` signature as usual, but requests go straight to `handler`,
skipping dependency injection and response-model passes, which cost several times the
work of a cached analysis or a small upload (see README, Benchmark). Handlers raise the
same domain errors as any route; the app's exception handlers map them.

Such routes must be added to the app's own router (`add_lean_route`), because routers
included with `include_router` are rebuilt from their endpoints.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from app.core.errors import PayloadTooLarge
from app.core.security import authenticate
from app.services.state import Services, services_or_unavailable

LeanHandler = Callable[[Scope, Receive, Send], Awaitable[None]]


class LeanRoute(APIRoute):
    """An APIRoute whose requests are served by the class's `handler`."""

    handler: LeanHandler

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.methods and scope["method"] not in self.methods:
            raise HTTPException(status_code=405, headers={"Allow": ", ".join(sorted(self.methods))})
        await type(self).handler(scope, receive, send)


def add_lean_routes(
    app: FastAPI,
    aliases: Iterable[tuple[str, str, str]],
    endpoint: Callable[..., Any],
    handler: LeanHandler,
    **kwargs: Any,
) -> None:
    """Document `endpoint` and serve it with `handler` at each (path, summary, operation_id)."""
    route_class = type(f"LeanRoute[{handler.__name__}]", (LeanRoute,), {"handler": staticmethod(handler)})
    for path, summary, operation_id in aliases:
        app.router.add_api_route(
            path,
            endpoint,
            summary=summary,
            operation_id=operation_id,
            route_class_override=route_class,
            **kwargs,
        )


def services_of(scope: Scope) -> Services:
    """The app's services (a lean handler's stand-in for the ServicesDep dependency)."""
    return services_or_unavailable(scope["app"].state)


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of a (lower-case) request header, decoded as Latin-1."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def content_length(scope: Scope) -> int | None:
    """The declared Content-Length, or None when absent or not a number."""
    value = header(scope, b"content-length")
    return int(value) if value is not None and value.isascii() and value.isdigit() else None


def multipart_body(
    properties: dict[str, dict[str, Any]], required: list[str], **others: dict[str, Any]
) -> dict[str, Any]:
    """An OpenAPI `requestBody` for a hand-parsed multipart form (Swagger UI shows a file
    picker for `{"type": "string", "format": "binary"}` fields), plus other media types."""
    schema = {"type": "object", "required": required, "properties": properties}
    content = {"multipart/form-data": {"schema": schema}, **{k: {"schema": v} for k, v in others.items()}}
    return {"requestBody": {"required": True, "content": content}}


def principal_of(scope: Scope, services: Services) -> str:
    """Who is calling (raises Unauthorized when a key is required and missing)."""
    return authenticate(services.settings.api_keys, header(scope, b"x-api-key"))


async def body_chunks(receive: Receive) -> AsyncIterator[bytes]:
    """The request body as it arrives; ClientDisconnect if the client hangs up."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def read_body(receive: Receive, limit: int | None = None) -> bytes:
    """The whole (small) request body; PayloadTooLarge past `limit` bytes."""
    chunks: list[bytes] = []
    total = 0
    async for chunk in body_chunks(receive):
        total += len(chunk)
        if limit is not None and total > limit:
            raise PayloadTooLarge(f"The request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    headers: Iterable[tuple[bytes, bytes]] = (),
    content_type: bytes = b"application/json",
) -> None:
    """Send a complete response."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
