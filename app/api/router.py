"""All routes of the service."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from app.api.routes import analyzers, frontal, health, images
from app.api.routes.analyses import install_analyze_routes
from app.api.routes.classify import install_classify_routes
from app.api.routes.forward import install_forward_routes
from app.api.routes.frontal import install_frontal_routes
from app.api.routes.images import install_upload_routes

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(images.router)
api_router.include_router(analyzers.router)
api_router.include_router(frontal.router)


def install_routes(app: FastAPI) -> None:
    """Add every route: the lean hot-path routes on the app's own router, then the rest."""
    install_upload_routes(app)
    install_analyze_routes(app)
    install_forward_routes(app)
    install_classify_routes(app)
    install_frontal_routes(app)
    app.include_router(api_router)
