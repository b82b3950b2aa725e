"""Group commit: rows that many requests wait for, written together in one transaction.

While one transaction is being written, new rows gather; the next transaction takes them
all. Under load, N concurrent uploads cost one commit instead of N; alone, a row costs what
it always did. Each caller awaits its own row: success once committed, or the error of
the transaction that carried it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

logger = logging.getLogger("app.db")

Row = TypeVar("Row")


class GroupCommit(Generic[Row]):
    """Batches rows into shared transactions through `write(session, rows)`."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        write: Callable[[AsyncSession, Sequence[Row]], Awaitable[None]],
        max_batch: int = 500,
    ) -> None:
        self.sessions = sessions
        self.write = write
        self.max_batch = max_batch
        self._waiting: list[tuple[Row, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def commit(self, row: Row) -> None:
        """Write `row` (with whatever else is waiting); returns once it is committed.

        Cancelling the caller does not withdraw the row: it may be committed anyway.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((row, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._drain())
        await asyncio.shield(future)

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
                try:
                    async with self.sessions.begin() as session:
                        await self.write(session, [row for row, _ in batch])
                except Exception as exc:  # every row of this transaction failed with it
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
        finally:
            self._writer = None
