"""Request history (seed 003): every analysis request recorded, listed, deleted, summarised.

Recording never waits for the database: rows go into a buffer that a background task
writes in batches (every `HISTORY_FLUSH_SECONDS` or `HISTORY_BATCH_SIZE` rows, one
transaction each); a graceful shutdown writes what is left, and a failed write is retried
(the buffer is bounded: past 100,000 waiting rows the oldest are dropped, with an error
log). While the database is down, rows wait in that buffer and each failed write counts in
`dependency_errors_total{dependency="database",use="history"}` (a warning at most every 10 s);
they are written once it is back. Reads flush first, so a request is listed as soon as it has
been answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core import metrics
from app.core.tasks import cancel_and_wait
from app.db import history
from app.db.engine import is_outage
from app.db.history import HistoryFilter, HistoryStats
from app.db.models import RequestLog

logger = logging.getLogger("app.history")

MAX_BUFFERED = 100_000
WARN_EVERY_SECONDS = 10.0


class HistoryService:
    """The buffered writer and the queries."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], flush_seconds: float, batch_size: int
    ) -> None:
        self.sessions = sessions
        self.flush_seconds = flush_seconds
        self.batch_size = batch_size
        self._buffer: deque[dict[str, Any]] = deque()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._warned_at = -math.inf
        self._dropped = 0

    def record(self, row: dict[str, Any]) -> None:
        """Queue one row (a dict of `RequestLog` columns); never blocks, never raises."""
        if len(self._buffer) >= MAX_BUFFERED:
            self._buffer.popleft()
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 10_000 == 0:
                logger.error("history buffer full: dropped the oldest row (%d so far)", self._dropped)
        self._buffer.append(row)
        if len(self._buffer) >= self.batch_size:
            self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="history-writer")

    async def stop(self) -> None:
        """Stop the writer, then write everything buffered (also when the caller is cancelled
        meanwhile: its cancel is raised once the rows are written)."""
        try:
            await cancel_and_wait(self._task)
        finally:
            self._task = None
            await self.flush()
            if self._buffer:
                logger.error("history: %d row(s) could not be written at shutdown", len(self._buffer))

    async def flush(self) -> None:
        """Write the buffered rows now (batch by batch)."""
        async with self._lock:
            while self._buffer:
                batch = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
                try:
                    async with self.sessions.begin() as session:
                        await history.insert_many(session, rows=batch)
                except Exception as exc:
                    self._buffer.extendleft(reversed(batch))  # keep them for the next try
                    metrics.DEPENDENCY_ERRORS.labels("database", "history").inc()
                    if time.monotonic() - self._warned_at >= WARN_EVERY_SECONDS:
                        self._warned_at = time.monotonic()
                        logger.warning(
                            "history: writing %d row(s) failed (%s: %s); %d waiting, will retry",
                            len(batch),
                            type(exc).__name__,
                            exc,
                            len(self._buffer),
                            exc_info=not is_outage(exc),
                        )
                    return

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_seconds)
            self._wake.clear()
            await self.flush()

    async def page(self, filter: HistoryFilter, limit: int, offset: int) -> tuple[int, list[RequestLog]]:
        await self.flush()
        async with self.sessions() as session:
            return await history.list_page(session, filter=filter, limit=limit, offset=offset)

    async def delete(self, filter: HistoryFilter) -> int:
        await self.flush()
        async with self.sessions.begin() as session:
            return await history.delete(session, filter=filter)

    async def stats(self, filter: HistoryFilter) -> HistoryStats:
        await self.flush()
        async with self.sessions.begin() as session:  # one snapshot on PostgreSQL (see history.stats)
            return await history.stats(session, filter=filter)

    async def erase(self, principal: str) -> int:
        """Keep a principal's history without anything personal (account erasure): route,
        status, times and sizes stay; the principal, result bodies and error texts go."""
        await self.flush()
        async with self.sessions.begin() as session:
            return await history.erase_principal(session, principal)
