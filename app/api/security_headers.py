"""Security headers on every response: precomputed bytes appended by a step of `app.api.pipeline`.

The header values are built once, at start-up, with the `secure` library's typed builders
(validated, no hand-written header strings); per request the step only looks at the
response's own header names (a route's `Content-Security-Policy` or `Cache-Control` wins) and
appends a tuple of bytes pairs. Every response gets `X-Content-Type-Options: nosniff`,
`Referrer-Policy: no-referrer`, `X-Frame-Options: DENY`, a CSP that forbids everything
(`default-src 'none'; frame-ancestors 'none'`: JSON is data, never a page), `Cache-Control:
no-store` unless the route set its own (tokens, profiles and per-caller data must not sit
in shared caches), and `Strict-Transport-Security` when `HSTS_SECONDS` is set.

The docs pages (`/docs`, `/redoc`, Swagger UI's OAuth2 redirect) get a CSP that lets them
work from the service's own assets only: their inline scripts are allowed by SHA-256 hash
(the pages are rendered from the app's configuration, and the hashes are taken from what
was rendered, once per distinct page), inline styles are allowed (ReDoc's styled-components
inject `<style>` elements), images and fonts from `'self'` and `data:`, ReDoc's search
worker from `blob:`, fetches to `'self'` only. The web page (`/`, `app.web`) gets its own
(`page_policy`): scripts and styles from its own files only, images also from `blob:`.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import lru_cache
from urllib.parse import quote

from secure import (
    CacheControl,
    ContentSecurityPolicy,
    ReferrerPolicy,
    Secure,
    StrictTransportSecurity,
    XContentTypeOptions,
    XFrameOptions,
)
from starlette.types import Message, Send

Headers = tuple[tuple[bytes, bytes], ...]

DOCS_PAGES = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})
DOCS_ASSETS = "/static-offline-docs/"
_CSP = b"content-security-policy"
_CACHE_CONTROL = b"cache-control"
_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE)
_MAX_DOCS_POLICIES = 16

# Image bytes viewed as a page: no script, no plugin, a unique origin (`sandbox`).
IMAGE_CONTENT_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"


def _encode(secure: Secure) -> Headers:
    items = secure.validate_and_normalize_headers(on_invalid="raise", strict=True).headers.items()
    return tuple((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in items)


def base_headers(*, hsts_seconds: int = 0, hsts_include_subdomains: bool = False) -> Headers:
    """The headers every response gets (CSP and Cache-Control are added separately)."""
    hsts = None
    if hsts_seconds > 0:
        hsts = StrictTransportSecurity().max_age(hsts_seconds)
        if hsts_include_subdomains:
            hsts = hsts.include_subdomains()
    return _encode(
        Secure(
            xcto=XContentTypeOptions().nosniff(),
            referrer=ReferrerPolicy().no_referrer(),
            xfo=XFrameOptions().deny(),
            hsts=hsts,
        )
    )


def api_policy() -> bytes:
    """The CSP of everything but the docs pages: nothing may load, nobody may frame."""
    return _encode(Secure(csp=ContentSecurityPolicy().default_src("'none'").frame_ancestors("'none'")))[0][1]


def docs_policy(script_hashes: list[str]) -> bytes:
    """The CSP of a docs page whose inline scripts have these `'sha256-…'` hashes."""
    csp = (
        ContentSecurityPolicy()
        .default_src("'none'")
        .script_src("'self'", *script_hashes)
        .style_src("'self'", "'unsafe-inline'")
        .img_src("'self'", "data:")
        .font_src("'self'", "data:")
        .connect_src("'self'")
        .worker_src("'self'", "blob:")
        .base_uri("'none'")
        .form_action("'self'")
        .frame_ancestors("'none'")
    )
    return _encode(Secure(csp=csp))[0][1]


def page_policy() -> bytes:
    """The CSP of the web page at `/` (`app.web`): its own script and style files only (no
    inline script or style), the photo shown from a `blob:` URL or the service, fetches to the
    service only; nothing from another origin, no framing."""
    csp = (
        ContentSecurityPolicy()
        .default_src("'none'")
        .script_src("'self'")
        .style_src("'self'")
        .img_src("'self'", "blob:", "data:")
        .connect_src("'self'")
        .base_uri("'none'")
        .form_action("'none'")
        .frame_ancestors("'none'")
    )
    return _encode(Secure(csp=csp))[0][1]


def inline_script_hashes(html: bytes) -> list[str]:
    """CSP source expressions (`'sha256-…'`) of every inline `<script>` of a page, in order."""
    hashes = []
    for match in _INLINE_SCRIPT.finditer(html):
        digest = base64.b64encode(hashlib.sha256(match.group(1)).digest()).decode()
        hashes.append(f"'sha256-{digest}'")
    return hashes


def no_store() -> bytes:
    """`Cache-Control: no-store`, the default of every response that sets none."""
    return _encode(Secure(cache=CacheControl().no_store()))[0][1]


@lru_cache
def error_headers(hsts_seconds: int = 0, hsts_include_subdomains: bool = False) -> dict[str, str]:
    """The same headers as a dict, for the 500 answer (Starlette sends it outside all middleware)."""
    headers = (
        *base_headers(hsts_seconds=hsts_seconds, hsts_include_subdomains=hsts_include_subdomains),
        (_CSP, api_policy()),
        (_CACHE_CONTROL, no_store()),
    )
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in headers}


class SecurityHeaders:
    """The security headers (precomputed bytes) for every HTTP response."""

    def __init__(self, *, hsts_seconds: int = 0, hsts_include_subdomains: bool = False) -> None:
        self.headers = base_headers(
            hsts_seconds=hsts_seconds, hsts_include_subdomains=hsts_include_subdomains
        )
        self.csp = (_CSP, api_policy())
        self.no_store = (_CACHE_CONTROL, no_store())
        # What to append, by (response has its own CSP, response has its own Cache-Control)
        self.appended: dict[tuple[bool, bool], Headers] = {
            (False, False): (*self.headers, self.csp, self.no_store),
            (False, True): (*self.headers, self.csp),
            (True, False): (*self.headers, self.no_store),
            (True, True): self.headers,
        }
        self.docs_policies: dict[bytes, bytes] = {}

    def for_response(self, path: str, has_csp: bool, has_cache_control: bool) -> Headers:
        """What to append to a response of `path` that has (or not) its own CSP and Cache-Control."""
        if path.startswith(DOCS_ASSETS):  # the docs' static files: cacheable, their own types
            return self.headers
        return self.appended[has_csp, has_cache_control]

    def docs_page(self, send: Send) -> Send:
        """`send` for a docs page (small HTML): buffered, so that its CSP can name its inline
        scripts (the page's own CSP, if any, is replaced)."""
        start: Message | None = None
        body = bytearray()

        async def buffer(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
                if not message.get("more_body", False) and start is not None:
                    await self._send_docs_page(start, bytes(body), send)
            else:
                await send(message)

        return buffer

    async def _send_docs_page(self, start: Message, body: bytes, send: Send) -> None:
        policy = self.docs_policies.get(body)
        if policy is None:
            policy = docs_policy(inline_script_hashes(body))
            if len(self.docs_policies) < _MAX_DOCS_POLICIES:
                self.docs_policies[body] = policy
        headers = [(name, value) for name, value in start.get("headers", []) if name != _CSP]
        start["headers"] = [*headers, *self.headers, (_CSP, policy), self.no_store]
        await send(start)
        await send({"type": "http.response.body", "body": body, "more_body": False})


def content_disposition(filename: str | None, extension: str) -> str:
    """`inline`, naming the stored file (RFC 6266 with an RFC 5987 `filename*`), or plain `inline`.

    The name keeps the client's stem but takes the extension of the type found in the bytes
    (a `.jpg` is saved as a JPEG, never as the `.html` a client may have called it); the
    quoted `filename` is an ASCII fallback with quotes, backslashes, controls and non-ASCII
    replaced, and `filename*` carries the exact UTF-8 name percent-encoded.
    """
    if not filename:
        return "inline"
    stem = filename.rsplit(".", 1)[0] if "." in filename.lstrip(".") else filename
    name = f"{stem.strip() or 'image'}.{extension}"
    fallback = "".join(ch if " " <= ch <= "~" and ch not in '"\\%' else "_" for ch in name)
    return f"inline; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
