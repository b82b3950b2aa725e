"""Dependencies that fail: the real Redis and PostgreSQL stopped under a running app, then started again.

Each test starts servers of its own (see `tests.dependency_servers`): the shared CI servers are
never stopped. A request that needs a server that is down is a 503 problem+json with
`Retry-After` (or, for Redis with the default fail-open policy, served without rate limits),
never a 500; readiness says which dependency failed; everything works again once the server is
back, without restarting the app.
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from app.core.config import Settings
from tests.conftest import files_under, serve
from tests.dependency_servers import PostgresCluster, RedisServer
from tests.factories import jpeg_bytes

PASSWORD = "correct horse battery staple"
RECOVERY_SECONDS = 30.0  # an upper bound only: each wait polls and ends as soon as it holds


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    try:
        yield cluster
    finally:
        cluster.close()


async def upload(c: httpx.AsyncClient) -> httpx.Response:
    return await c.post("/api/v1/upload", files={"file": ("a.jpg", jpeg_bytes(), "image/jpeg")})


async def login(c: httpx.AsyncClient, username: str = "alice") -> httpx.Response:
    return await c.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})


async def every_route(c: httpx.AsyncClient, image_id: str) -> dict[str, httpx.Response]:
    """The routes the issue names: upload, metadata, analyzer list, login, analyze."""
    return {
        "upload": await upload(c),
        "metadata": await c.get(f"/api/v1/images/{image_id}"),
        "analyzers": await c.get("/api/v1/analyzers"),
        "login": await login(c),
        "analyze": await c.post("/api/v1/analyze", json={"image_id": image_id, "analyzer": "skin"}),
    }


def assert_unavailable(resp: httpx.Response, code: str) -> None:
    assert resp.status_code == 503, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["code"] == code
    assert int(resp.headers["retry-after"]) >= 1


async def eventually(check: Callable[[], object]) -> None:
    """Poll `check` (an async callable returning truthy when done) until it holds."""
    with anyio.fail_after(RECOVERY_SECONDS):
        while not await check():  # type: ignore[misc]
            await anyio.sleep(0.1)


def readiness(resp: httpx.Response) -> dict[str, dict[str, object]]:
    return {check["name"]: check for check in resp.json()["checks"]}


def metric(text: str, name: str, **labels: str) -> float:
    wanted = name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    return 0.0


async def dependency_errors(c: httpx.AsyncClient, dependency: str, use: str) -> float:
    """`dependency_errors_total` now (the counters of a test session's apps add up: compare)."""
    text = (await c.get("/metrics")).text
    return metric(text, "dependency_errors_total", dependency=dependency, use=use)


async def redis_errors(c: httpx.AsyncClient) -> float:
    return await dependency_errors(c, "redis", "rate_limit")


def redis_settings(make_settings: Callable[..., Settings], url: str, **overrides: object) -> Settings:
    # Limits far above what a test sends: the test sees whether they are applied, not refused.
    values: dict[str, object] = {"redis_timeout_seconds": 0.5, "rate_limit_default": "10000/minute"}
    return make_settings(redis_url=url, **{**values, **overrides})


async def test_redis_down_fail_open_serves_warns_counts_and_recovers(
    make_settings: Callable[..., Settings], redis_server: RedisServer
) -> None:
    logged: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: logged.append(record.getMessage())  # type: ignore[method-assign]
    async with serve(redis_settings(make_settings, redis_server.url)) as c:
        assert (
            await c.post("/api/v1/auth/register", json={"username": "alice", "password": PASSWORD})
        ).is_success
        first = await upload(c)
        assert first.status_code == 201 and "ratelimit" in first.headers
        image_id = first.json()["image_id"]

        before = await redis_errors(c)
        redis_server.stop()
        logging.getLogger("app.rate_limits").addHandler(handler)  # the app's loggers do not propagate
        try:
            answers = await every_route(c, image_id)
            answers["upload again"] = await upload(c)
        finally:
            logging.getLogger("app.rate_limits").removeHandler(handler)
        assert {name: r.status_code for name, r in answers.items()} == {
            "upload": 201,
            "metadata": 200,
            "analyzers": 200,
            "login": 200,
            "analyze": 200,
            "upload again": 201,
        }
        assert "ratelimit" not in answers["upload"].headers  # served without a limit
        assert logged and all("Redis is unavailable for rate limits" in w for w in logged)
        counted = await redis_errors(c) - before
        assert counted >= len(answers) > len(logged)  # every skipped limit counted, warnings throttled
        ready = await c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        assert readiness(ready)["redis"]["ok"] is False and readiness(ready)["redis"]["required"] is False

        redis_server.start()

        async def limited_again() -> bool:
            return "ratelimit" in (await upload(c)).headers

        await eventually(limited_again)
        ready = await c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        assert readiness(ready)["redis"]["ok"] is True


async def test_redis_down_fail_closed_is_503_and_not_ready_until_it_returns(
    make_settings: Callable[..., Settings], redis_server: RedisServer
) -> None:
    settings = redis_settings(make_settings, redis_server.url, redis_outage_policy="fail-closed")
    async with serve(settings) as c:
        assert (
            await c.post("/api/v1/auth/register", json={"username": "alice", "password": PASSWORD})
        ).is_success
        image_id = (await upload(c)).json()["image_id"]
        images_before = files_under(settings.images_dir)

        redis_server.stop()
        for name, resp in (await every_route(c, image_id)).items():
            assert_unavailable(resp, "rate_limiter_unavailable"), name
        assert files_under(settings.images_dir) == images_before  # the refused upload left nothing
        ready = await c.get("/readyz")
        assert ready.status_code == 503 and readiness(ready)["redis"]["required"] is True
        assert (await c.get("/health")).status_code == 200

        redis_server.start()

        async def served_again() -> bool:
            return (await upload(c)).status_code == 201

        await eventually(served_again)
        assert (await login(c)).status_code == 200
        assert (await c.get("/readyz")).status_code == 200


async def test_a_redis_that_never_answers_costs_a_request_at_most_the_timeout(
    make_settings: Callable[..., Settings],
) -> None:
    # A blackholed Redis: the port accepts connections (the kernel's backlog) but nothing answers.
    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(128)
        url = f"redis://127.0.0.1:{blackhole.getsockname()[1]}/0"
        async with serve(redis_settings(make_settings, url, redis_timeout_seconds=0.2)) as c:
            with anyio.fail_after(RECOVERY_SECONDS):  # without a timeout these hang for good
                assert (await upload(c)).status_code == 201
                assert (await c.get("/api/v1/analyzers")).status_code == 200
                ready = await c.get("/readyz")
            assert ready.status_code == 200 and readiness(ready)["redis"]["ok"] is False


@pytest.fixture
async def pg_app(
    make_settings: Callable[..., Settings], postgres: PostgresCluster
) -> AsyncIterator[httpx.AsyncClient]:
    postgres.start()
    async with serve(make_settings(database_url=postgres.url, database_connect_timeout_seconds=2.0)) as c:
        yield c


@pytest.mark.slow  # initdb and two server starts: several seconds
async def test_postgres_down_is_503_with_retry_after_and_recovers_without_restart(
    pg_app: httpx.AsyncClient, postgres: PostgresCluster, make_settings: Callable[..., Settings]
) -> None:
    c = pg_app
    images_dir = make_settings().images_dir
    alice = {"username": "alice", "password": PASSWORD, "is_admin": True}  # the first admin
    assert (await c.post("/register", json=alice)).is_success
    admin = {"Authorization": f"Bearer {(await login(c)).json()['access_token']}"}
    image_id = (await upload(c)).json()["image_id"]
    assert (await c.get("/readyz")).status_code == 200
    images_before = files_under(images_dir)
    before = await dependency_errors(c, "database", "request")

    postgres.stop()
    answers = await every_route(c, image_id)
    answers["unknown metadata"] = await c.get(f"/api/v1/images/{uuid.uuid4()}")  # not 404: unknown now
    for name in ("upload", "login", "unknown metadata"):
        assert_unavailable(answers[name], "database_unavailable"), name
    for name in ("metadata", "analyzers", "analyze"):  # may be served from memory (caches)
        if answers[name].status_code != 200:
            assert_unavailable(answers[name], "database_unavailable"), name
    assert files_under(images_dir) == images_before  # the refused upload left nothing
    assert_unavailable(await c.get("/history", headers=admin), "database_unavailable")
    ready = await c.get("/readyz")
    assert ready.status_code == 503 and readiness(ready)["database"]["ok"] is False
    assert await dependency_errors(c, "database", "request") - before >= 3

    postgres.start()

    async def ready_again() -> bool:
        return (await c.get("/readyz")).status_code == 200

    await eventually(ready_again)
    # The one analysis request so far was answered during the outage: its history row waited.
    history = await c.get("/history", headers=admin)
    assert history.status_code == 200
    assert [row["route"] for row in history.json()["items"]] == ["/api/v1/analyze"], history.text
    answers = await every_route(c, image_id)
    assert {name: r.status_code for name, r in answers.items()} == {
        "upload": 201,
        "metadata": 200,
        "analyzers": 200,
        "login": 200,
        "analyze": 200,
    }


@pytest.mark.slow
async def test_postgres_down_at_start_up_serves_503_then_becomes_ready(
    make_settings: Callable[..., Settings], postgres: PostgresCluster
) -> None:
    settings = make_settings(database_url=postgres.url, database_connect_timeout_seconds=2.0)
    async with serve(settings) as c:  # the server is not running yet: the app starts all the same
        ready = await c.get("/readyz")
        assert ready.status_code == 503 and readiness(ready)["database"]["ok"] is False
        assert_unavailable(await upload(c), "database_unavailable")
        assert (await c.get("/health")).status_code == 200

        postgres.start()

        async def ready_now() -> bool:
            return (await c.get("/readyz")).status_code == 200

        await eventually(ready_now)
        assert (
            await c.post("/api/v1/auth/register", json={"username": "alice", "password": PASSWORD})
        ).is_success
        assert (await login(c)).status_code == 200
        assert (await upload(c)).status_code == 201
