"""A webhook receiver on loopback for tests: a real HTTP/1.1 server that records what arrives,
answers 500 to the first `fail_first` requests, or never answers (`hang`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass
class Received:
    """One request as it arrived: its headers (lower-case names) and its body bytes."""

    headers: dict[str, str]
    body: bytes
    answered: int | None


@dataclass
class Receiver:
    port: int = 0
    fail_first: int = 0
    hang: bool = False
    requests: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    held: int = 0  # connections held open without an answer
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def delivered(self) -> list[Received]:
        return [r for r in self.requests if r.answered == 200]

    async def wait_for(self, predicate: object, timeout: float = 30) -> None:
        """Until `predicate(self)` holds (each arrival wakes the check)."""
        async with asyncio.timeout(timeout):
            while not predicate(self):  # type: ignore[operator]
                self.arrived.clear()
                await self.arrived.wait()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")[1:]
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            if self.hang:
                self.requests.append(Received(headers, body, None))
                self.held += 1
                self.arrived.set()
                await asyncio.Event().wait()  # never answers (until the sender gives up)
            status = 500 if len(self.requests) < self.fail_first else 200
            self.requests.append(Received(headers, body, status))
            reason = b"OK" if status == 200 else b"Internal Server Error"
            writer.write(
                b"HTTP/1.1 %d %s\r\ncontent-length: 0\r\nconnection: close\r\n\r\n" % (status, reason)
            )
            await writer.drain()
            self.arrived.set()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self.tasks.discard(task)


@asynccontextmanager
async def receiver(fail_first: int = 0, hang: bool = False) -> AsyncIterator[Receiver]:
    """A running receiver on 127.0.0.1 (an ephemeral port)."""
    state = Receiver(fail_first=fail_first, hang=hang)
    server = await asyncio.start_server(state._handle, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        for task in list(state.tasks):
            task.cancel()
        await asyncio.gather(*state.tasks, return_exceptions=True)
        await server.wait_closed()
