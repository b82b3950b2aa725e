"""app.core.tasks: stopping background tasks without swallowing the caller's own cancel."""

from __future__ import annotations

import asyncio
import logging

import pytest

from app.core.tasks import cancel_and_wait


async def _background(ended: list[str], release: asyncio.Event | None = None) -> None:
    """Runs until cancelled; its clean-up waits for `release` (a slow stop) when given."""
    try:
        await asyncio.Event().wait()
    finally:
        if release is not None:
            await release.wait()
        ended.append("clean-up done")  # not reached when the clean-up is cancelled


async def test_cancels_the_tasks_and_returns_once_their_clean_up_has_run() -> None:
    ended: list[str] = []
    tasks = [asyncio.create_task(_background(ended)) for _ in range(3)]
    await asyncio.sleep(0)
    await cancel_and_wait(tasks[0], None, *tasks[1:])
    assert ended == ["clean-up done"] * 3
    assert all(task.cancelled() for task in tasks)


async def test_a_cancel_of_the_caller_while_it_waits_reaches_the_caller() -> None:
    ended: list[str] = []
    release = asyncio.Event()  # never set: the background task's clean-up is slow
    background = asyncio.create_task(_background(ended, release))
    after_stop: list[str] = []

    async def stopper() -> None:
        await cancel_and_wait(background)
        after_stop.append("carried on")  # what the swallowing idiom did: the cancel was lost

    stopping = asyncio.create_task(stopper())
    await asyncio.sleep(0.01)
    assert not stopping.done()  # it waits for the background task's clean-up
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    # As with any awaited task, the cancel went on to the task waited for (its clean-up was
    # cut short), and the caller raised only once that task had ended.
    assert stopping.cancelled() and after_stop == []
    assert background.done() and ended == []


async def test_an_error_a_task_ends_with_is_logged_and_the_others_still_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def failing() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            raise RuntimeError("broken clean-up")

    ended: list[str] = []
    broken = asyncio.create_task(failing(), name="broken-task")
    other = asyncio.create_task(_background(ended))
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="app.tasks"):
        await cancel_and_wait(broken, other)
    assert ended == ["clean-up done"]
    assert "broken-task" in caplog.text and "broken clean-up" in caplog.text


async def test_tasks_already_ended_and_no_tasks_at_all_are_fine() -> None:
    done = asyncio.create_task(asyncio.sleep(0, result="x"))
    await done
    await cancel_and_wait(done)
    await cancel_and_wait()
    await cancel_and_wait(None)
    assert done.result() == "x"
