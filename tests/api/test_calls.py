"""One request as the pipeline and its route see it (`Call`): the app's services while they are
ready, the caller resolved once, and rate limits counted per caller and per address."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.requests import Request

from app.api.calls import SCOPE_KEY, Call, call_of, container_of
from app.core.config import Settings
from app.core.errors import DatabaseUnavailable, ServiceUnavailable, TooManyRequests, Unauthorized
from app.main import create_app
from tests.conftest import http_scope, shared_registry

KEY = "k-123"


def _request(app: FastAPI, *, address: str = "127.0.0.1", headers: dict[str, str] | None = None) -> Request:
    raw = [(name.encode(), value.encode()) for name, value in (headers or {}).items()]
    scope: dict[str, Any] = {**http_scope("GET", "/x", raw), "app": app, "client": (address, 50000)}
    return Request(scope)


async def test_the_services_are_there_only_once_started_and_the_database_ready(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(), registry=shared_registry())
    with pytest.raises(ServiceUnavailable):
        container_of(_request(app))
    async with app.router.lifespan_context(app):
        container = container_of(_request(app))
        assert container.database_ready and Call(_request(app)).services is container
        container.database_ready = False  # as while an unreachable PostgreSQL is retried
        with pytest.raises(DatabaseUnavailable):
            container_of(_request(app))
        assert container_of(_request(app), need_database=False) is container
        container.database_ready = True


async def test_the_caller_is_resolved_once_from_the_credentials(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(api_keys=[KEY]), registry=shared_registry())
    async with app.router.lifespan_context(app):
        keyed = Call(_request(app, headers={"x-api-key": KEY}))
        assert keyed.sent_credentials() and keyed.principal is None
        principal = await keyed.caller()
        assert principal.kind == "api_key" and keyed.principal is principal
        assert await keyed.caller() is principal
        with pytest.raises(Unauthorized):
            await Call(_request(app, headers={"x-api-key": "wrong"})).caller()
        bare = Call(_request(app))
        assert not bare.sent_credentials()
        with pytest.raises(Unauthorized):  # API keys set: no anonymous access
            await bare.caller()


async def test_limits_count_per_address_and_per_known_caller(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(api_keys=[KEY], anonymous_access=True, rate_limit_default="2/minute")
    app = create_app(settings, registry=shared_registry())
    async with app.router.lifespan_context(app):

        async def hit(address: str, *, key: bool = False, per_caller: bool = True) -> Call:
            call = Call(_request(app, address=address, headers={"x-api-key": KEY} if key else None))
            await call.caller()
            await call.limit("default", per_caller=per_caller)
            return call

        # anonymous callers share no identity: only their address counts
        first = await hit("10.0.0.1")
        assert first.quota is not None and (first.quota.limit, first.quota.remaining) == (2, 1)
        await hit("10.0.0.1")
        with pytest.raises(TooManyRequests):
            await hit("10.0.0.1")
        await hit("10.0.0.2")  # another address has its own count
        # a known caller is counted as such, whatever its address
        await hit("10.0.1.1", key=True)
        await hit("10.0.1.2", key=True)
        with pytest.raises(TooManyRequests):
            await hit("10.0.1.3", key=True)
        # unless the route counts per address only
        assert (await hit("10.0.1.4", key=True, per_caller=False)).quota is not None


def test_call_of_keeps_one_call_per_request() -> None:
    scope: dict[str, Any] = http_scope("GET", "/x", [])
    request = Request(scope)
    call = call_of(request)
    assert scope[SCOPE_KEY] is call and call_of(Request(scope)) is call
