"""Admission (a pipeline step): connection caps (503 at once), exempt probes, memory trimming when idle."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from app.api import traffic
from app.api.traffic import Admission


class HeldApp:
    """An ASGI app that answers 200 once `release` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


class Admitted:
    """An ASGI app behind `Admission`, as `app.api.pipeline` puts it in front of a route."""

    def __init__(self, app: Any, **limits: Any) -> None:
        self.app = app
        self.admission = Admission(**limits)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        address = scope["client"][0]
        refusal = self.admission.admit(scope["path"], address)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.admission.leave(address)


def scope(path: str = "/api/v1/images", address: str = "10.0.0.1") -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": path, "headers": [], "client": (address, 1)}


async def call(app: Admitted, s: dict[str, Any]) -> list[dict]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(s, receive, send)
    return sent


async def test_over_the_caps_is_503_at_once_and_probes_always_pass() -> None:
    inner = HeldApp()
    app = Admitted(inner, max_concurrent=3, max_per_address=2)
    held = [asyncio.ensure_future(call(app, scope())) for _ in range(2)]
    await asyncio.sleep(0)
    same_address = await asyncio.wait_for(call(app, scope()), 1)
    assert same_address[0]["status"] == 503
    assert (b"retry-after", b"1") in same_address[0]["headers"]
    assert json.loads(same_address[1]["body"])["code"] == "overloaded"
    held.append(asyncio.ensure_future(call(app, scope(address="10.0.0.2"))))  # another address: served
    await asyncio.sleep(0)
    full = await asyncio.wait_for(call(app, scope(address="10.0.0.3")), 1)
    assert full[0]["status"] == 503  # three in flight: the total cap
    probe = asyncio.ensure_future(call(app, scope("/healthz")))
    inner.release.set()
    assert [r[0]["status"] for r in await asyncio.gather(*held, probe)] == [200, 200, 200, 200]
    assert app.admission.in_flight == 0 and app.admission.by_address == {}


async def test_memory_is_trimmed_when_idle_at_most_every_few_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(traffic, "TRIM_EVERY_SECONDS", 0.2)
    monkeypatch.setattr(traffic, "IDLE_TRIMS", 1)
    inner = HeldApp()
    inner.release.set()
    app = Admitted(inner, max_concurrent=10, max_per_address=10)
    await call(app, scope())  # one request (one large analysis, say): trimmed once idle
    await asyncio.sleep(0.05)
    assert app.admission.trims == 1
    for _ in range(20):  # more requests at once after it: one trim, when the period is over
        await call(app, scope())
    await asyncio.sleep(0.05)
    assert app.admission.trims == 1
    await asyncio.sleep(0.3)
    assert app.admission.trims == 2


async def test_an_idle_process_trims_again_a_few_times_then_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    # Work that outlives the last request frees its memory after the first trim.
    monkeypatch.setattr(traffic, "TRIM_EVERY_SECONDS", 0.05)
    monkeypatch.setattr(traffic, "IDLE_TRIMS", 3)
    inner = HeldApp()
    inner.release.set()
    app = Admitted(inner, max_concurrent=10, max_per_address=10)
    await call(app, scope())
    for _ in range(100):
        await asyncio.sleep(0.05)
        if app.admission.trim_timer is None:
            break
    assert app.admission.trims == 3 and app.admission.trim_timer is None
    await asyncio.sleep(0.2)
    assert app.admission.trims == 3  # idle and trimmed: nothing more until requests come again
    await call(app, scope())
    await asyncio.sleep(0.3)
    assert app.admission.trims == 6


async def test_the_last_quarter_is_kept_for_addresses_holding_less_than_their_share() -> None:
    inner = HeldApp()
    app = Admitted(inner, max_concurrent=8, max_per_address=8, reserve_fraction=0.25)
    held = [asyncio.ensure_future(call(app, scope(address=a))) for a in ["10.0.0.1"] * 3 + ["10.0.0.2"] * 3]
    await asyncio.sleep(0)  # six in flight: the reserve (the last two) is being handed out
    heavy = await asyncio.wait_for(call(app, scope(address="10.0.0.1")), 1)
    assert heavy[0]["status"] == 503 and json.loads(heavy[1]["body"])["code"] == "overloaded"
    held += [asyncio.ensure_future(call(app, scope(address=a))) for a in ("10.0.0.3", "10.0.0.4")]
    await asyncio.sleep(0)  # newcomers are served from the reserve
    assert app.admission.in_flight == 8
    full = await asyncio.wait_for(call(app, scope(address="10.0.0.5")), 1)
    assert full[0]["status"] == 503
    inner.release.set()
    assert [r[0]["status"] for r in await asyncio.gather(*held)] == [200] * 8
