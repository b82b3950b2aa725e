"""Every route of the service: the routers, in the order they are matched."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from app.api.routes import (
    admin,
    analyses,
    auth,
    classify,
    contours,
    forward,
    health,
    images,
    previews,
    web,
    webhooks,
)

ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    images.router,
    analyses.router,
    classify.router,
    forward.router,
    contours.router,
    webhooks.router,
    auth.router,
    admin.router,
    previews.router,
    web.router,
)


def include_routes(app: FastAPI, *, web_page: bool = True) -> None:
    """Add every router to the app (the web page's only if `web_page`)."""
    for router in ROUTERS:
        if router is not web.router or web_page:
            app.include_router(router)
