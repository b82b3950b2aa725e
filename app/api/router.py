"""Every route of the service: the routers, in the order they are matched."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from app.api.routes import admin, analyses, auth, classify, contours, forward, health, images, webhooks

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
)


def include_routes(app: FastAPI) -> None:
    """Add every router to the app."""
    for router in ROUTERS:
        app.include_router(router)
