"""Stopping background tasks: cancel them and wait for their end, without swallowing a cancel
that was meant for the caller.

The usual idiom, `task.cancel()` then `await task` under `suppress(CancelledError)`, also
suppresses the caller's own cancel when one arrives while it waits: the caller then carries
on as if it had not been cancelled, and whatever cancelled it (a timeout, a task group, a
shut-down) waits for a task that will not stop. `cancel_and_wait` tells the two apart.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

logger = logging.getLogger("app.tasks")


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel `tasks` (a None is skipped) and return once each has ended.

    How a task ends is its own affair: its cancel is expected, and an error it ends with is
    logged, not raised (one task's failure must not stop a shut-down from stopping the rest).
    A cancel of the caller while it waits still reaches the caller, once the tasks have ended
    (as with any awaited task, the cancel also goes on to the tasks, cutting their clean-up
    short: a caller that is cancelled while it stops something wants it stopped now).
    """
    stopping = [task for task in tasks if task is not None]
    for task in stopping:
        task.cancel()
    # gather(return_exceptions=True) returns the tasks' own ends, and raises CancelledError
    # only when gather itself, that is the caller, was cancelled.
    ends = await asyncio.gather(*stopping, return_exceptions=True)
    for task, end in zip(stopping, ends, strict=True):
        if isinstance(end, BaseException) and not isinstance(end, asyncio.CancelledError):
            logger.error("task %s ended with an error while it was stopped", task.get_name(), exc_info=end)
