"""The web page at `/` and its files: served from the app package, under the page's own CSP,
with nothing from another origin and no inline script."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx

from app.core.config import Settings
from tests.conftest import serve

SVG_NAMESPACE = "http://www.w3.org/2000/svg"


def directives(policy: str) -> dict[str, list[str]]:
    return {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}


async def test_the_page_is_served_under_its_own_csp(client: httpx.AsyncClient) -> None:
    resp = await client.get("/")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/html; charset=utf-8"
    csp = directives(resp.headers["content-security-policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'"]  # no inline script, no eval, no CDN
    assert csp["style-src"] == ["'self'"]
    assert csp["connect-src"] == ["'self'"]
    assert csp["img-src"] == ["'self'", "blob:", "data:"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert resp.headers["x-frame-options"] == "DENY"
    html = resp.text
    # Every script is a file of the service's own; no inline handlers or styles to allow.
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.DOTALL)
    assert scripts and all('src="/web/' in attrs and not body.strip() for attrs, body in scripts)
    assert not re.search(r"\son[a-z]+=", html)
    assert "style=" not in html
    # Camera on a phone, any image type.
    assert re.search(r'<input id="camera" type="file" accept="image/\*" capture', html)


async def test_the_page_and_its_files_load_nothing_from_elsewhere(client: httpx.AsyncClient) -> None:
    html = (await client.get("/")).text
    linked = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert linked, "the page links its script and style sheet"
    for url in linked:
        assert url.startswith(("/", "#")) or url == "data:,", url
        if url.startswith("/web/"):
            resp = await client.get(url)
            assert resp.status_code == 200, url
            assert resp.headers["content-type"].startswith(("text/javascript", "text/css")), url
            # The only absolute URL is the SVG namespace (an identifier, never fetched).
            assert set(re.findall(r"https?://[^\s\"')]+", resp.text)) <= {SVG_NAMESPACE}, url


async def test_files_are_revalidated_with_their_etag(client: httpx.AsyncClient) -> None:
    for path in ("/", "/web/app.js", "/web/app.css"):
        first = await client.get(path)
        assert first.headers["cache-control"] == "no-cache"
        again = await client.get(path, headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304
        assert again.content == b""


async def test_unknown_files_are_404_problems(client: httpx.AsyncClient) -> None:
    for path in ("/web/nope.js", "/web/index.html", "/web/..%2Fstatic%2Fapp.js", "/web/" + "a" * 65):
        resp = await client.get(path)
        assert resp.status_code in (400, 404), path
        assert resp.headers["content-type"] == "application/problem+json", path
        assert resp.json()["code"] in ("not_found", "validation_error"), path


async def test_the_page_can_be_switched_off(make_settings: Callable[..., Settings]) -> None:
    async with serve(make_settings(web_page_enabled=False)) as c:
        for path in ("/", "/web/app.js"):
            resp = await c.get(path)
            assert resp.status_code == 404
            assert resp.json()["code"] == "not_found"


async def test_the_page_is_not_part_of_the_api_schema(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "/" not in paths
    assert not any(path.startswith("/web/") for path in paths)
    assert "/api/v1/images/{image_id}/preview" in paths
