"""Security headers on every kind of response, a CSP under which the self-hosted docs work,
safe image content, HSTS behind a setting, CORS closed in production; the honest OpenAPI."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from urllib.parse import unquote

import httpx
import pytest
from PIL import Image

from app.api.security_headers import content_disposition, inline_script_hashes
from app.core.config import Settings
from app.main import create_app
from tests.conftest import serve, shared_registry
from tests.factories import encode

API_CSP = "default-src 'none'; frame-ancestors 'none'"
PASSWORD = "correct horse battery"


def assert_secured(resp: httpx.Response, csp: str | None = API_CSP) -> None:
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["referrer-policy"] == "no-referrer"
    assert resp.headers["x-frame-options"] == "DENY"
    assert len(resp.headers.get_list("content-security-policy")) == 1
    if csp is not None:
        assert resp.headers["content-security-policy"] == csp
    assert "strict-transport-security" not in resp.headers


def directives(csp: str) -> dict[str, list[str]]:
    parts = (item.split() for item in csp.split(";") if item.strip())
    return {name: values for name, *values in parts}


async def test_every_header_on_a_normal_response(client: httpx.AsyncClient) -> None:
    resp = await client.get("/health")
    assert resp.status_code == 200
    assert_secured(resp)
    assert resp.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nowhere", 404),
        ("GET", "/api/v1/images/not-a-uuid", 400),
        ("GET", "/api/v1/images/3fa85f64-5717-4562-b3fc-2c963f66afa6", 404),
        ("PUT", "/api/v1/images/3fa85f64-5717-4562-b3fc-2c963f66afa6", 405),
        ("GET", "/v1/me", 401),
        ("POST", "/api/v1/analyze", 400),
    ],
)
async def test_every_header_on_errors(client: httpx.AsyncClient, method: str, path: str, status: int) -> None:
    resp = await client.request(method, path)
    assert resp.status_code == status
    assert resp.headers["content-type"] == "application/problem+json"
    assert_secured(resp)
    assert resp.headers["cache-control"] == "no-store"


async def test_unhandled_errors_get_the_headers_too(settings: Settings) -> None:
    app = create_app(settings, registry=shared_registry())

    async def boom() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/boom", boom)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            resp = await c.get("/boom")
    assert resp.status_code == 500
    assert resp.json()["code"] == "internal_error"
    assert_secured(resp)


async def test_405_allows_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    image = "/api/v1/images/3fa85f64-5717-4562-b3fc-2c963f66afa6"
    for method in ("PUT", "PATCH", "POST", "OPTIONS"):
        resp = await client.request(method, image)
        assert resp.status_code == 405
        assert resp.headers["allow"] == "DELETE, GET, HEAD"
    assert (await client.put("/history")).headers["allow"] == "DELETE, GET, HEAD"
    assert (await client.post("/health")).headers["allow"] == "GET, HEAD"
    assert (await client.delete("/openapi.json")).headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    ("method", "path", "target"), [("GET", "/health/", "/health"), ("POST", "/upload/", "/upload")]
)
async def test_trailing_slash_redirects_never_echo_the_host_header(
    client: httpx.AsyncClient, method: str, path: str, target: str
) -> None:
    """A forged Host header must not come back in a Location (cache poisoning, open redirect)."""
    resp = await client.request(method, path, headers={"Host": "evil.example"})
    assert resp.status_code == 307
    assert resp.headers["location"] == target
    assert_secured(resp)
    followed = await client.get("/health/", follow_redirects=True)
    assert (followed.status_code, followed.json()) == (200, {"status": "healthy"})
    # A path that would become a network-path reference ("//host") stays on this host.
    odd = await client.get("//evil.example/health/")
    assert not odd.headers.get("location", "/").startswith("//")


async def test_hsts_only_when_enabled(make_settings: Callable[..., Settings]) -> None:
    async with serve(make_settings(hsts_seconds=31536000)) as c:
        assert (await c.get("/health")).headers["strict-transport-security"] == "max-age=31536000"
        assert (await c.get("/docs")).headers["strict-transport-security"] == "max-age=31536000"
    async with serve(make_settings(hsts_seconds=600, hsts_include_subdomains=True)) as c:
        resp = await c.get("/nowhere")
        assert resp.headers["strict-transport-security"] == "max-age=600; includeSubDomains"


@pytest.mark.parametrize("page", ["/docs", "/redoc", "/docs/oauth2-redirect"])
async def test_docs_pages_load_only_what_their_csp_allows(client: httpx.AsyncClient, page: str) -> None:
    resp = await client.get(page)
    assert resp.status_code == 200
    assert_secured(resp, csp=None)
    csp = directives(resp.headers["content-security-policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["connect-src"] == ["'self'"]  # the OpenAPI document and "Try it out"
    html = resp.content
    # Every inline script is allowed by its hash, and only those (plus the service's own files).
    inline = re.findall(rb"<script>(.*?)</script>", html, re.DOTALL)
    hashes = [f"'sha256-{base64.b64encode(hashlib.sha256(code).digest()).decode()}'" for code in inline]
    assert csp["script-src"] == ["'self'", *hashes]
    assert inline_script_hashes(html) == hashes
    assert "'unsafe-inline'" not in csp["script-src"] and "'unsafe-eval'" not in csp["script-src"]
    # Every asset the page references is the service's own ('self'), and is served.
    for url in re.findall(r'(?:src|href)="([^"]+)"', resp.text):
        assert url.startswith("/") and not url.startswith("//"), url
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["x-content-type-options"] == "nosniff"
        assert "no-store" not in asset.headers.get("cache-control", "")  # static files may be cached


async def test_swagger_ui_has_no_external_validator(client: httpx.AsyncClient) -> None:
    html = (await client.get("/docs")).text
    assert '"validatorUrl": null' in html


async def test_image_content_is_inline_sandboxed_and_named_safely(client: httpx.AsyncClient) -> None:
    webp = encode(Image.new("RGB", (32, 24), (1, 2, 3)), "WEBP")
    name = 'a"b; <d> é.html'
    upload = await client.post("/api/v1/upload", files={"file": (name, webp, "image/webp")})
    assert upload.status_code == 201, upload.text
    assert upload.headers["cache-control"] == "no-store"
    image_id = upload.json()["image_id"]
    resp = await client.get(f"/api/v1/images/{image_id}/content")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "image/webp"
    assert_secured(resp, csp="default-src 'none'; style-src 'unsafe-inline'; sandbox")
    disposition = resp.headers["content-disposition"]
    fallback = re.fullmatch(
        r"inline; filename=\"([^\"\\]*)\"; filename\*=UTF-8''([A-Za-z0-9%._~-]+)", disposition
    )
    assert fallback is not None, disposition
    assert fallback.group(1).isascii() and fallback.group(1).endswith(".webp")
    stored = upload.json()["filename"]  # as sanitized at upload
    assert stored.endswith(".html")
    assert unquote(fallback.group(2)) == stored.removesuffix(".html") + ".webp"
    assert resp.headers["cache-control"] == "private, no-cache"  # the route's own


def test_content_disposition() -> None:
    assert content_disposition(None, "jpg") == "inline"
    assert (
        content_disposition("face.JPG", "jpg") == "inline; filename=\"face.jpg\"; filename*=UTF-8''face.jpg"
    )
    assert content_disposition("x.svg", "png").endswith("filename*=UTF-8''x.png")
    header = content_disposition('evil"\r\nSet-Cookie: a=b.jpg', "jpg")
    assert "\r" not in header and "\n" not in header and header.count('"') == 2
    assert content_disposition("ünïcode", "heic") == (
        "inline; filename=\"_n_code.heic\"; filename*=UTF-8''%C3%BCn%C3%AFcode.heic"
    )


async def test_auth_responses_are_not_stored(client: httpx.AsyncClient) -> None:
    creds = {"username": "nostore", "password": PASSWORD}
    registered = await client.post("/v1/register", json=creds)
    assert registered.status_code == 201
    assert registered.headers["cache-control"] == "no-store"
    login = await client.post("/v1/login", json=creds)
    assert login.headers["cache-control"] == "no-store"
    token = login.json()["access_token"]
    me = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.headers["cache-control"] == "no-store"
    assert_secured(me)


async def test_cors_is_open_in_development_and_closed_in_production(
    make_settings: Callable[..., Settings],
) -> None:
    preflight = {"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"}
    async with serve(make_settings(environment="development")) as c:
        resp = await c.options("/api/v1/analyze", headers=preflight)
        assert resp.headers["access-control-allow-origin"] == "*"
        assert_secured(resp)
    production = make_settings(environment="production", secret_key="s" * 32)
    assert production.cors_origins == []
    async with serve(production) as c:
        resp = await c.options("/api/v1/analyze", headers=preflight)
        assert resp.status_code == 400
        assert "access-control-allow-origin" not in resp.headers
        simple = await c.get("/health", headers={"Origin": "https://elsewhere.example"})
        assert "access-control-allow-origin" not in simple.headers
    chosen = make_settings(environment="production", cors_origins="https://app.example")
    assert chosen.cors_origins == ["https://app.example"]


async def test_answers_of_the_outer_layers_carry_cors_headers(
    make_settings: Callable[..., Settings],
) -> None:
    # CORS wraps the layers that answer by themselves (admission 503, stall 408, body 413).
    origin = {"Origin": "https://app.example"}
    async with serve(make_settings(cors_origins="https://app.example")) as c:
        big = await c.post(
            "/analyze",
            content=b'{"x": "' + b"a" * 70_000 + b'"}',
            headers={**origin, "Content-Type": "application/json"},
        )  # the body-limit layer's 413
        assert big.status_code == 413
        assert big.headers["access-control-allow-origin"] == "https://app.example"
        lean = await c.post("/api/v1/analyze", json={"image_id": "nope"}, headers=origin)
        assert lean.status_code in (400, 404)
        assert lean.headers["access-control-allow-origin"] == "https://app.example"
        assert "Retry-After" in lean.headers["access-control-expose-headers"]
