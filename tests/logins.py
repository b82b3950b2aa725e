"""Helpers of the login tests: an app over small explicit limits, clients from chosen addresses."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import coredis
import httpx
from fastapi import FastAPI

from app.core.config import Settings
from app.main import create_app
from tests.conftest import shared_registry

PASSWORD = "correct horse battery"
LIMIT = 8  # 4 x login_failures_before_delay
# Small, explicit limits: nothing here depends on the defaults or on the machine's speed.
SMALL = {
    "login_failures_before_delay": 2,
    "login_max_delay_seconds": 0,
    "rate_limit_auth": "10000/minute",
    "rate_limit_login_username": "10000/minute",
    "password_hash_queue_limit": 100,
    "password_hash_max_wait_seconds": 60,
}
TOKEN_FIELDS = {"access_token", "token_type", "expires_in", "refresh_token", "refresh_expires_in"}


async def clear_redis_counters(url: str) -> None:
    """Forget every login counter of earlier tests (they are keyed by address and username)."""
    client = coredis.Redis.from_url(url)
    keys = [key async for key in client.scan_iter(match="login:*")]
    if keys:
        await client.delete(keys)
    client.connection_pool.disconnect()


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app on `settings`, its lifespan running (Redis counters of earlier tests cleared)."""
    if settings.redis_url:
        await clear_redis_counters(settings.redis_url)
    application = create_app(settings, registry=shared_registry())
    async with application.router.lifespan_context(application):
        yield application


def client_from(app: FastAPI, address: str, base_url: str = "http://testserver") -> httpx.AsyncClient:
    """A client (with its own cookie jar) whose requests come from `address`."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(address, 40000)), base_url=base_url
    )


async def register(app: FastAPI) -> str:
    """A new user (a unique name) with PASSWORD."""
    username = f"user-{uuid.uuid4().hex[:12]}"
    async with client_from(app, "10.9.9.9") as c:
        resp = await c.post("/api/v1/auth/register", json={"username": username, "password": PASSWORD})
    assert resp.status_code == 201, resp.text
    return username


async def login(c: httpx.AsyncClient, username: str, password: str = PASSWORD) -> httpx.Response:
    return await c.post("/api/v1/auth/login", json={"username": username, "password": password})


async def codes(c: httpx.AsyncClient, username: str, count: int, password: str = "wrong guess") -> list[int]:
    return [(await login(c, username, password)).status_code for _ in range(count)]
