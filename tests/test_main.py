"""app.main: the application factory and its lifespan."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable

import app.main
from app.core.config import Settings
from app.main import create_app
from tests.conftest import shared_registry
from tests.processes import in_fork


def test_the_first_start_up_of_a_process_freezes_what_it_built(
    make_settings: Callable[..., Settings],
) -> None:
    """What start-up leaves alive (modules, models, services: some 200,000 objects) is moved out
    of the garbage collector's reach, so that a full collection (~0.1 s here, every few thousand
    requests) does not walk it again and again."""
    registry = shared_registry()

    async def start_twice() -> tuple[int, int]:
        application = create_app(make_settings(), registry=registry)
        async with application.router.lifespan_context(application):
            first = gc.get_freeze_count()
        gc.collect()
        again = create_app(make_settings(), registry=registry)
        async with again.router.lifespan_context(again):
            second = gc.get_freeze_count()
        return first, second

    def in_a_fresh_process() -> bytes:
        gc.unfreeze()  # as in a process whose app never started (this one's have, in a full run)
        app.main._frozen = False
        assert gc.get_freeze_count() == 0
        first, second = asyncio.run(start_twice())
        return f"{first} {second}".encode()

    _, answer = in_fork(in_a_fresh_process)
    first, second = map(int, answer.split())
    assert first > 50_000  # the models, modules and services that start-up left alive
    # Once per process: a later app (the tests make many) freezes nothing more (frozen objects
    # freed since by their reference counts leave the count)
    assert second <= first
