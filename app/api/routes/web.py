"""The web page (`/`) and its script and style sheet (`/web/...`): static files of `app.web`.

The files are read once, at import, and served from memory with an ETag (their SHA-256) and
`Cache-Control: no-cache` (a browser revalidates: 304). The page has its own CSP
(`security_headers.page_policy`: its own files only, no inline script); the assets get the
API's (`default-src 'none'`), which does not apply to a script or style sheet loaded by the
page. With `WEB_PAGE_ENABLED=false` this router is not included (`app.api.router`): 404s.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi import Path as PathParam
from starlette.responses import Response

from app.api.security_headers import page_policy
from app.core.errors import NotFound

STATIC = Path(__file__).resolve().parents[2] / "web" / "static"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Asset:
    """One static file as served: its bytes, type and entity tag."""

    body: bytes
    media_type: str
    etag: str


def load_assets(folder: Path = STATIC) -> dict[str, Asset]:
    """Every servable file of `folder` by name (read once)."""
    assets = {}
    for path in sorted(folder.iterdir()):
        media_type = TYPES.get(path.suffix)
        if media_type is not None and path.is_file():
            body = path.read_bytes()
            assets[path.name] = Asset(body, media_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"')
    return assets


ASSETS = load_assets()
PAGE_CSP = page_policy().decode("latin-1")

router = APIRouter(tags=["web"], include_in_schema=False)


def _serve(asset: Asset, if_none_match: str | None, extra: dict[str, str] | None = None) -> Response:
    headers = {"ETag": asset.etag, "Cache-Control": "no-cache", **(extra or {})}
    if if_none_match is not None and asset.etag in {tag.strip() for tag in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, 200, headers, asset.media_type)


@router.get("/")
async def page(if_none_match: Annotated[str | None, Header()] = None) -> Response:
    """The page to try the service (`index.html`) under its own CSP."""
    return _serve(ASSETS["index.html"], if_none_match, {"Content-Security-Policy": PAGE_CSP})


@router.get("/web/{name}")
async def asset(
    name: Annotated[str, PathParam(max_length=64)],
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The page's script, style sheet and icon (`index.html` itself only at `/`)."""
    found = ASSETS.get(name)
    if found is None or name == "index.html":
        raise NotFound("Not Found")
    return _serve(found, if_none_match)
