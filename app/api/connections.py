"""Connections at the socket: a request-head timeout and a per-address connection cap, in
uvicorn's own HTTP/1.1 protocols.

uvicorn (0.54) has no header-read timeout: a connection that sends part of a request head
and then nothing is held forever, and so are thousands of them from one address (its
keep-alive timeout only runs between requests, and `--limit-concurrency` answers 503 only
once a head is complete). `ConnectionGuard` adds both limits:

- a connection whose request head is not complete HEADER_READ_TIMEOUT_SECONDS after the
  connection opened (first request) or after the first bytes of a following head arrived
  (keep-alive) is closed; one that had sent part of a head is answered 408 first;
- at most MAX_CONNECTIONS_PER_ADDRESS connections are open from one client address (per
  worker process): one more is answered 503 `overloaded` and closed at once, before
  anything is read. Behind a proxy every connection comes from the proxy's address: set the
  cap above its connection pool there (requests are still capped per forwarded address by
  `app.api.traffic`).

How it gets into uvicorn: `install(settings)` wraps four methods (`connection_made`,
`connection_lost`, `data_received`, `on_response_complete`) of both HTTP/1.1 protocol
classes, `HttpToolsProtocol` and `H11Protocol` (what `--http auto|httptools|h11` use), in
place. Registering another class in uvicorn's protocol table would come too late:
`Config.load` imports the protocol class before it imports the app, and `app.main:app` runs
`create_app`, which installs the guard; patching the class object itself reaches every
connection the server accepts afterwards. Installing again only updates the limits (tests
build many apps in one process; a process serves one app); with `--workers N` each worker
process installs its own guard. A head is "complete" when uvicorn starts a request cycle for
it, whichever parser made it.

One sweeping task per process, not a timer per connection (as `app.api.stalls`), closes the
heads that took too long and publishes the connections per state (`http_connections`); it
runs while connections are open.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from http import HTTPStatus
from importlib import import_module
from typing import Any

from app.api.problems import PROBLEM_MEDIA_TYPE, problem_body
from app.api.settings import ConnectionLimits
from app.core import metrics
from app.core.errors import AppError, Overloaded, RequestTimeout

logger = logging.getLogger("app.connections")

PROTOCOLS = (
    ("uvicorn.protocols.http.httptools_impl", "HttpToolsProtocol"),
    ("uvicorn.protocols.http.h11_impl", "H11Protocol"),
)
_WRAPPED = "__connection_guard__"


def _raw_response(error: AppError) -> bytes:
    """`error`'s problem+json response written straight to the socket (no request cycle exists)."""
    status = error.status
    body = json.dumps(problem_body(status, error.code, error.detail))
    headers = "".join(f"{name.lower()}: {value}\r\n" for name, value in error.headers.items())
    return (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: {PROBLEM_MEDIA_TYPE}\r\n"
        f"content-length: {len(body)}\r\n{headers}connection: close\r\n\r\n{body}"
    ).encode()


class ConnectionGuard:
    """Open connections of this process: per address, and those waiting for a request head."""

    def __init__(self, head_timeout: float = 10.0, max_per_address: int = 512) -> None:
        self.head_timeout = head_timeout
        self.max_per_address = max_per_address
        self.open: dict[Any, str | None] = {}  # protocol -> client address (None: a unix socket)
        self.by_address: dict[str, int] = {}
        # protocol -> (waiting for a head since, bytes of it arrived)
        self.heads: dict[Any, tuple[float, bool]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def configure(self, head_timeout: float, max_per_address: int) -> None:
        """Set the limits (connections already open keep their place)."""
        self.head_timeout = head_timeout
        self.max_per_address = max_per_address

    def opened(self, protocol: Any) -> None:
        """A connection was made: counted, its first head awaited; or refused (503) over the cap."""
        address = protocol.client[0] if protocol.client else None
        if address is not None:
            held = self.by_address.get(address, 0)
            if held >= self.max_per_address:
                metrics.CONNECTIONS_CLOSED.labels("max_per_address").inc()
                detail = f"Too many connections from {address}; try again shortly"
                protocol.transport.write(_raw_response(Overloaded(detail)))
                protocol.transport.close()
                return
            self.by_address[address] = held + 1
        self.open[protocol] = address
        self.heads[protocol] = (time.monotonic(), False)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    def closed(self, protocol: Any) -> None:
        """A connection was lost (refused ones were never counted)."""
        if protocol not in self.open:
            return
        address = self.open.pop(protocol)
        self.heads.pop(protocol, None)
        if address is not None:
            left = self.by_address[address] - 1
            if left:
                self.by_address[address] = left
            else:
                del self.by_address[address]

    def receiving(self, protocol: Any) -> bool:
        """Bytes arrive: they start a head when none is in progress and no request is. False for a
        connection that was refused (its bytes are not read)."""
        head = self.heads.get(protocol)
        if head is not None:
            if not head[1]:
                self.heads[protocol] = (head[0], True)
            return True
        if protocol not in self.open:
            return False
        if not _serving(protocol):
            self.heads[protocol] = (time.monotonic(), True)
        return True

    def head_complete(self, protocol: Any) -> None:
        """uvicorn started a request for the head: its clock stops."""
        self.heads.pop(protocol, None)

    async def _sweep(self) -> None:
        while self.open:
            await asyncio.sleep(min(1.0, self.head_timeout / 4))
            now = time.monotonic()
            for protocol, (since, partial) in list(self.heads.items()):
                if now - since > self.head_timeout:
                    self._expire(protocol, partial)
            self._publish()
        self._publish()

    def _expire(self, protocol: Any, partial: bool) -> None:
        self.heads.pop(protocol, None)
        transport = protocol.transport
        if transport.is_closing():
            return
        metrics.CONNECTIONS_CLOSED.labels("head_timeout").inc()
        if partial:  # a client that sent part of a head learns why (an idle one is just closed)
            detail = f"The request head was not complete within {self.head_timeout:g} s"
            transport.write(_raw_response(RequestTimeout(detail)))
        transport.close()

    def _publish(self) -> None:
        serving = sum(1 for protocol in self.open if protocol not in self.heads and _serving(protocol))
        heads = len(self.heads)
        metrics.CONNECTIONS.labels("head").set(heads)
        metrics.CONNECTIONS.labels("request").set(serving)
        metrics.CONNECTIONS.labels("idle").set(len(self.open) - heads - serving)


def _serving(protocol: Any) -> bool:
    cycle = protocol.cycle
    return cycle is not None and not cycle.response_complete


GUARD = ConnectionGuard()


def _guarded(cls: type[Any]) -> None:
    """Wrap `cls`'s connection methods with GUARD's (once)."""
    if cls.__dict__.get(_WRAPPED):
        return
    made: Callable[..., None] = cls.connection_made
    lost: Callable[..., None] = cls.connection_lost
    received: Callable[..., None] = cls.data_received
    completed: Callable[..., None] = cls.on_response_complete

    def connection_made(self: Any, transport: asyncio.Transport) -> None:
        made(self, transport)
        GUARD.opened(self)

    def connection_lost(self: Any, exc: Exception | None) -> None:
        GUARD.closed(self)
        lost(self, exc)

    def data_received(self: Any, data: bytes) -> None:
        if not GUARD.receiving(self):
            return
        cycle = self.cycle
        received(self, data)
        if self.cycle is not cycle:
            GUARD.head_complete(self)

    def on_response_complete(self: Any) -> None:
        cycle = self.cycle
        completed(self)
        if self.cycle is not cycle:  # h11 started a pipelined request
            GUARD.head_complete(self)

    cls.connection_made = connection_made
    cls.connection_lost = connection_lost
    cls.data_received = data_received
    cls.on_response_complete = on_response_complete
    setattr(cls, _WRAPPED, True)


def install(settings: ConnectionLimits) -> ConnectionGuard:
    """Put the guard into uvicorn's HTTP/1.1 protocols (idempotent) with `settings`' limits."""
    GUARD.configure(settings.header_read_timeout_seconds, settings.max_connections_per_address)
    for module_name, class_name in PROTOCOLS:
        try:
            cls = getattr(import_module(module_name), class_name)
        except ImportError:  # httptools not installed: uvicorn uses h11 alone
            continue
        _guarded(cls)
    return GUARD
