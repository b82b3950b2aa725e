"""A TCP relay on a fixed loopback port in front of a real server (S3, PostgreSQL), to make it
unreachable and bring it back without touching the server: `close` refuses new connections and
cuts the open ones, `open` listens again on the same port.

`Relay` runs on the caller's event loop (in-process apps); `ThreadRelay` runs one on a loop of
its own in a daemon thread, for servers in other processes (it keeps relaying while the test's
code blocks or no loop runs, e.g. while replicas start)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any

from tests.processes import free_port


class Relay:
    """Relays 127.0.0.1:`port` to `target` (`host:port` or an `http://host:port` URL)."""

    def __init__(self, target: str) -> None:
        host, _, port = target.removeprefix("http://").partition(":")
        self.target = (host, int(port))
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.links: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def open(self) -> None:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            for writer in list(self.links):
                writer.transport.abort()
            await self.server.wait_closed()
            self.server = None

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.links |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while chunk := await src.read(65536):
                    dst.write(chunk)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self.links -= {writer, up_writer}


class ThreadRelay:
    """A `Relay` on its own event loop in a daemon thread, driven with blocking calls."""

    def __init__(self, target: str) -> None:
        self.relay = Relay(target)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="relay", daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.relay.port

    @property
    def url(self) -> str:
        return self.relay.url

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def open(self) -> None:
        """Listen (again): the server is reachable."""
        self._call(self.relay.open())

    def close(self) -> None:
        """Refuse connections and cut the open ones: the server is unreachable."""
        self._call(self.relay.close())

    def stop(self) -> None:
        """Close and end the thread."""
        self.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()
