"""app.api.router: `include_routes` adds every router, the web page's only when asked."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from app.api.router import ROUTERS, include_routes
from app.api.routes import web


def paths(app: FastAPI) -> set[str]:
    """The paths of the app's API routes (FastAPI keeps included routers nested)."""
    return {route.path for route in iter_route_contexts(app.router.routes) if route.methods} - DOCS


DOCS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def test_every_router_is_included_and_the_web_page_only_when_asked() -> None:
    with_page, without_page = FastAPI(), FastAPI()
    include_routes(with_page)
    include_routes(without_page, web_page=False)
    expected = {route.path for router in ROUTERS for route in router.routes if isinstance(route, APIRoute)}
    web_paths = {route.path for route in web.router.routes if isinstance(route, APIRoute)}
    assert web_paths and paths(with_page) == expected
    assert paths(without_page) == expected - web_paths
    assert {"/health", "/api/v1/upload", "/v1/login"} <= paths(without_page)
