"""app.api.problems: every exception an app raises becomes an RFC 9457 problem+json with `detail`
and `code` -- domain errors keep their status, code and headers, validation errors are 400
`validation_error`, routing errors keep their status (405 with every allowed method), a lost
database is 503 `database_unavailable` with Retry-After, anything else a 500 without internals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from http import HTTPStatus

import httpx
import pytest
import sqlalchemy.exc as sa_exc
from fastapi import FastAPI

from app.api.problems import PROBLEM_MEDIA_TYPE, problem_body, register_exception_handlers
from app.core.errors import ImageNotFound, ValidationFailed


def build_app() -> FastAPI:
    app = FastAPI()
    register_exception_handlers(app)

    @app.get("/images/{image_id}")
    async def missing(image_id: str) -> None:
        raise ImageNotFound(extra={"image_id": image_id}, headers={"X-Hint": "look elsewhere"})

    @app.get("/count")
    async def count(n: int) -> int:
        return n

    @app.post("/count")
    async def post_count() -> int:
        return 0

    @app.get("/pool")
    async def pool() -> None:
        raise sa_exc.TimeoutError("QueuePool limit reached")

    @app.get("/bug")
    async def bug() -> None:
        raise RuntimeError("secret internals /etc/passwd")

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


def test_problem_body_has_the_rfc_members_and_the_code() -> None:
    body = problem_body(413, "payload_too_large", "Too big", limit=10)
    assert body == {
        "type": "about:blank",
        "title": HTTPStatus(413).phrase,
        "status": 413,
        "detail": "Too big",
        "code": "payload_too_large",
        "limit": 10,
    }
    assert problem_body(599, "x", "y")["title"] == "Error"  # no standard phrase


async def test_a_domain_error_keeps_its_status_code_extra_and_headers(client: httpx.AsyncClient) -> None:
    resp = await client.get("/images/abc")
    assert resp.status_code == 404
    assert resp.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert resp.headers["x-hint"] == "look elsewhere"
    body = resp.json()
    assert (body["code"], body["detail"], body["image_id"]) == ("image_not_found", "Image not found", "abc")


async def test_request_validation_is_400_naming_the_field(client: httpx.AsyncClient) -> None:
    resp = await client.get("/count", params={"n": "many"})
    assert resp.status_code == 400
    assert resp.json()["code"] == ValidationFailed.code
    assert "n" in str(resp.json()["fields"])


async def test_routing_errors_keep_their_status_with_a_stable_code(client: httpx.AsyncClient) -> None:
    resp = await client.get("/nowhere")
    assert (resp.status_code, resp.json()["code"]) == (404, "not_found")
    resp = await client.delete("/count")
    assert (resp.status_code, resp.json()["code"]) == (405, "method_not_allowed")
    assert resp.headers["allow"] == "GET, HEAD, POST"  # both routes at the path


async def test_a_lost_database_is_503_with_retry_after(client: httpx.AsyncClient) -> None:
    resp = await client.get("/pool")
    assert resp.status_code == 503
    assert resp.json()["code"] == "database_unavailable"
    assert int(resp.headers["retry-after"]) > 0


async def test_an_unexpected_error_is_500_without_internals(client: httpx.AsyncClient) -> None:
    resp = await client.get("/bug")
    assert resp.status_code == 500
    assert resp.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert resp.json()["code"] == "internal_error"
    assert "passwd" not in resp.text and "RuntimeError" not in resp.text
