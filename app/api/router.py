"""All routers of the service."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.routes import analyses, health, images

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(images.router)
api_router.include_router(analyses.router)
