"""app.api.routing: lean handlers get the services they declare, by type, bound at registration."""

from __future__ import annotations

import pytest
from fastapi import APIRouter

from app.api.calls import Call
from app.api.routing import OPEN, BodyBuffer, Reply, bind_services, lean_route
from app.core.errors import PayloadTooLarge
from app.services.images.catalog import ImageService


async def test_a_lean_handler_gets_the_services_it_declares(client) -> None:
    # The seed routes are lean handlers with services (upload: IngestService): served, not 500
    response = await client.post("/api/v1/analyze", json={"image_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6"})
    assert response.status_code == 404 and response.json()["code"] == "image_not_found"


def test_a_handler_without_services_is_served_as_it_is() -> None:
    async def plain(call: Call) -> Reply:
        raise NotImplementedError

    assert bind_services(plain) is plain


def test_a_parameter_no_service_has_is_refused_at_registration() -> None:
    async def wants(call: Call, images: ImageService, nothing: int) -> Reply:
        raise NotImplementedError

    with pytest.raises(TypeError, match="int"):
        lean_route(APIRouter(), [("/x", "x", "x")], policy=OPEN)(wants)


def test_a_body_buffer_keeps_one_chunk_as_it_came_joins_more_and_stops_at_its_limit() -> None:
    one = BodyBuffer(10)
    chunk = b"0123456789"
    one.add(chunk)
    assert one.whole() is chunk  # the usual small body: no copy
    several = BodyBuffer(10)
    for piece in (b"", b"01", b"", b"234", b"56789"):
        several.add(piece)
    assert several.whole() == chunk
    with pytest.raises(PayloadTooLarge):
        several.add(b"x")
