"""Safe URL downloads: SSRF refusals, redirects, size and time limits, cleanup.

Everything stays offline: the only traffic goes to the HTTP(S) servers this module starts on
127.0.0.1. Every download runs through `GuardTransport`, which fails the test if a request
is ever sent anywhere else, and the resolver is replaced by one that refuses real DNS lookups
(only `localhost` and numeric hosts, which resolve without the network, reach getaddrinfo).
"""

from __future__ import annotations

import io
import ipaddress
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest
from PIL import Image

from app.core.errors import (
    UrlFetchFailed,
    UrlNotAllowed,
    UrlTooLarge,
)
from app.services.fetch import url_policy
from app.services.fetch.download import Downloaded, download
from app.services.fetch.url_policy import UrlPolicy

LIMIT = 1000


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, "JPEG")
    return buf.getvalue()


JPEG = _jpeg()


# ---------------------------------------------------------------------------------------------
# A local test server


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        split = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(split.query).items()}
        path = split.path
        try:
            if path == "/image.jpg":
                self.body(200, JPEG, "image/jpeg")
            elif path == "/echo-host":
                self.body(200, self.headers.get("Host", "").encode(), "text/plain")
            elif path == "/bytes":
                self.sized(int(query["n"]), query.get("mode", "length"))
            elif path == "/big":
                # Declares a too-large body, then stalls: a client that reads would time out.
                self.head(200, "image/jpeg", {"Content-Length": str(LIMIT * 5)})
                time.sleep(3)
                self.wfile.write(b"\xff" * LIMIT * 5)
            elif path == "/slow":
                time.sleep(3)
                self.body(200, JPEG, "image/jpeg")
            elif path == "/stall-body":
                self.head(200, "image/jpeg", {"Content-Length": str(len(JPEG))})
                self.wfile.write(JPEG[:100])
                self.wfile.flush()
                time.sleep(3)
            elif path == "/drip":
                self.head(200, "image/jpeg", {"Content-Length": "30"})
                for _ in range(30):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.1)
            elif path == "/gzip":
                self.head(200, "image/jpeg", {"Content-Length": str(len(JPEG)), "Content-Encoding": "gzip"})
                self.wfile.write(JPEG)
            elif path == "/redirect-ok":
                self.redirect("/image.jpg")
            elif path == "/redirect-absolute":
                self.redirect(f"http://127.0.0.1:{self.server.server_address[1]}/image.jpg", status=301)
            elif path == "/redirect-private":
                self.redirect("http://10.0.0.1/x")
            elif path == "/redirect-metadata":
                self.redirect("http://169.254.169.254/latest/meta-data/")
            elif path == "/redirect-to":
                self.redirect(query["url"], status=307)
            elif path == "/redirect-loop":
                self.redirect("/redirect-loop")
            elif path.startswith("/hop/"):
                left = int(path.rsplit("/", 1)[1])
                self.redirect(f"/hop/{left - 1}" if left > 1 else "/image.jpg")  # /hop/N: N redirects
            elif path == "/redirect-no-location":
                self.body(302, b"", "text/plain")
            elif path == "/500":
                self.body(500, b"oops", "text/plain")
            else:
                self.body(404, b"not found", "text/plain")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    def head(self, status: int, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.flush()

    def body(self, status: int, data: bytes, content_type: str) -> None:
        self.head(status, content_type, {"Content-Length": str(len(data))})
        self.wfile.write(data)

    def redirect(self, location: str, status: int = 302) -> None:
        self.head(status, "text/plain", {"Location": location, "Content-Length": "0"})

    def sized(self, n: int, mode: str) -> None:
        data = b"\xab" * n
        if mode == "length":
            self.body(200, data, "application/octet-stream")
        elif mode == "chunked":
            self.head(200, "application/octet-stream", {"Transfer-Encoding": "chunked"})
            for start in range(0, n, 300):
                part = data[start : start + 300]
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        else:  # no framing: the body ends when the connection closes
            self.head(200, "application/octet-stream", {"Connection": "close"})
            self.wfile.write(data)
            self.close_connection = True


def _start(server: ThreadingHTTPServer) -> Iterator[str]:
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield str(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def port() -> Iterator[str]:
    yield from _start(ThreadingHTTPServer(("127.0.0.1", 0), Handler))


@pytest.fixture
def base(port: str) -> str:
    return f"http://127.0.0.1:{port}"


# ---------------------------------------------------------------------------------------------
# Network guards


class GuardTransport(httpx.AsyncBaseTransport):
    """Records every request; sends those for 127.0.0.1 on, fails the test for any other host."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.inner = inner or httpx.AsyncHTTPTransport(
            retries=0, trust_env=False, limits=httpx.Limits(max_keepalive_connections=0)
        )
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host != "127.0.0.1":
            raise AssertionError(f"the fetcher tried to connect to {request.url.host!r}")
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
async def guard() -> GuardTransport:
    transport = GuardTransport()
    yield transport
    await transport.aclose()


FakeDns = dict[str, Callable[[], list[str]]]

_NUMERIC_HOST = re.compile(r"[0-9a-fx.]+")


@pytest.fixture(autouse=True)
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> FakeDns:
    """Host name -> a function giving its addresses; real getaddrinfo only for offline forms."""
    table: FakeDns = {}
    real = url_policy.resolve

    def resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        if host in table:
            return [ipaddress.ip_address(a) for a in table[host]()]
        if host == "localhost" or (_NUMERIC_HOST.fullmatch(host) and any(c.isdigit() for c in host)):
            return real(host, port)
        raise AssertionError(f"unexpected DNS lookup of {host!r} in an offline test")

    monkeypatch.setattr(url_policy, "resolve", resolve)
    return table


def assert_clean(dest: Path) -> None:
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    folder = tmp_path / "downloads"
    folder.mkdir()
    return folder / "fetched.bin"


LOOPBACK = UrlPolicy(
    allow_loopback=True, max_bytes=LIMIT, connect_timeout=2, read_timeout=1, total_timeout=10
)
DEFAULT = UrlPolicy()


# ---------------------------------------------------------------------------------------------
# Refusals before any connection

REFUSED = {
    "http://127.0.0.1/": {"loopback"},
    "http://localhost/": {"loopback"},
    "http://10.1.2.3/": {"private"},
    "http://192.168.0.1:8080/admin": {"private"},
    "http://172.16.5.4/": {"private"},
    "http://169.254.169.254/latest/meta-data/": {"link-local"},
    "http://[::1]/": {"loopback"},
    "http://[::ffff:127.0.0.1]/": {"loopback"},
    "http://[::ffff:10.0.0.1]/": {"private"},
    "http://[::ffff:a9fe:a9fe]/": {"link-local"},
    "http://[fe80::1]/": {"link-local"},
    "http://[fd00::1]/": {"private"},
    "http://[64:ff9b::a00:1]/": {"private"},
    "http://[2002:7f00:1::]/": {"loopback"},
    "http://0.0.0.0/": {"unspecified"},
    "http://[::]/": {"unspecified"},
    "http://2130706433/": {"loopback"},
    "http://0177.0.0.1/": {"loopback", "invalid_url"},
    "http://0x7f.1/": {"loopback"},
    "http://0x7f000001/": {"loopback"},
    "http://127.1/": {"loopback"},
    "http://100.64.0.1/": {"shared"},
    "http://224.0.0.1/": {"multicast"},
    "file:///etc/passwd": {"scheme"},
    "ftp://example.com/x": {"scheme"},
    "gopher://example.com:70/_GET%20/": {"scheme"},
    "javascript:alert(1)": {"scheme"},
    "example.com/image.jpg": {"scheme"},
    "http://user:pw@example.com/": {"userinfo"},
    "http://user@example.com/": {"userinfo"},
    "http:///image.jpg": {"invalid_host"},
    "http://exa mple.com/": {"invalid_host"},
    "http://[::1/": {"invalid_url"},
}


@pytest.mark.parametrize("url", REFUSED)
async def test_refused_before_connecting(url: str, dest: Path, guard: GuardTransport) -> None:
    with pytest.raises(UrlNotAllowed) as caught:
        await download(url, dest, DEFAULT, transport=guard)
    assert caught.value.extra["rule"] in REFUSED[url]
    assert caught.value.status == 400
    assert guard.requests == []
    assert_clean(dest)


async def test_blocked_message_names_the_rule_not_the_address(dest: Path, guard: GuardTransport) -> None:
    with pytest.raises(UrlNotAllowed) as caught:
        await download("http://localhost/", dest, DEFAULT, transport=guard)
    assert "loopback" in caught.value.detail
    assert "127.0.0.1" not in caught.value.detail and "::1" not in caught.value.detail


async def test_the_live_loopback_server_is_refused_by_default(
    base: str, dest: Path, guard: GuardTransport
) -> None:
    with pytest.raises(UrlNotAllowed):
        await download(f"{base}/image.jpg", dest, DEFAULT, transport=guard)
    assert guard.requests == []
    assert_clean(dest)


async def test_a_name_resolving_to_loopback_is_refused(
    dest: Path, guard: GuardTransport, fake_dns: FakeDns
) -> None:
    fake_dns["example.test"] = lambda: ["127.0.0.1"]
    with pytest.raises(UrlNotAllowed) as caught:
        await download("http://example.test/cat.jpg", dest, DEFAULT, transport=guard)
    assert caught.value.extra["rule"] == "loopback"
    assert "127.0.0.1" not in caught.value.detail
    assert guard.requests == []
    assert_clean(dest)


async def test_every_resolved_address_must_be_public(
    dest: Path, guard: GuardTransport, fake_dns: FakeDns
) -> None:
    fake_dns["mixed.test"] = lambda: ["93.184.216.34", "10.0.0.7"]
    with pytest.raises(UrlNotAllowed) as caught:
        await download("http://mixed.test/", dest, DEFAULT, transport=guard)
    assert caught.value.extra["rule"] == "private"
    assert guard.requests == []
    assert_clean(dest)


async def test_unresolvable_host(dest: Path, guard: GuardTransport, fake_dns: FakeDns) -> None:
    def fail() -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    fake_dns["nowhere.test"] = fail
    with pytest.raises(UrlFetchFailed, match="could not be resolved"):
        await download("http://nowhere.test/", dest, DEFAULT, transport=guard)
    assert guard.requests == []
    assert_clean(dest)


async def test_port_not_in_allowed_ports(base: str, dest: Path, guard: GuardTransport) -> None:
    policy = UrlPolicy(allow_loopback=True, allowed_ports={80, 443})
    with pytest.raises(UrlNotAllowed) as caught:
        await download(f"{base}/image.jpg", dest, policy, transport=guard)
    assert caught.value.extra["rule"] == "port"
    assert guard.requests == []
    assert_clean(dest)


async def test_existing_dest_is_neither_overwritten_nor_removed(base: str, dest: Path) -> None:
    dest.write_bytes(b"someone else's file")
    with pytest.raises(FileExistsError):
        await download(f"{base}/image.jpg", dest, LOOPBACK)
    assert dest.read_bytes() == b"someone else's file"


# ---------------------------------------------------------------------------------------------
# Good downloads (allow_loopback)


async def test_downloads_an_image(base: str, dest: Path, guard: GuardTransport) -> None:
    result = await download(f"{base}/image.jpg", dest, LOOPBACK, transport=guard)
    assert result == Downloaded(final_url=f"{base}/image.jpg", content_type="image/jpeg", size=len(JPEG))
    assert dest.read_bytes() == JPEG
    (request,) = guard.requests
    assert request.headers["accept-encoding"] == "identity"
    assert "sni_hostname" not in request.extensions


async def test_downloads_with_the_default_transport(base: str, dest: Path) -> None:
    result = await download(f"{base}/image.jpg", dest, LOOPBACK)
    assert result.size == len(JPEG) and dest.read_bytes() == JPEG


@pytest.mark.parametrize("path", ["/redirect-ok", "/redirect-absolute", "/hop/3"])
async def test_follows_redirects(path: str, base: str, dest: Path, guard: GuardTransport) -> None:
    result = await download(f"{base}{path}", dest, LOOPBACK, transport=guard)
    assert result.final_url == f"{base}/image.jpg"
    assert result.content_type == "image/jpeg"
    assert dest.read_bytes() == JPEG


async def test_connects_to_the_checked_address_with_the_original_host(
    port: str, dest: Path, guard: GuardTransport, fake_dns: FakeDns
) -> None:
    # A rebinding resolver: public-looking first, private afterwards. Only one lookup may happen.
    answers = iter([["127.0.0.1"], ["10.0.0.1"]])
    calls: list[int] = []

    def rebinding() -> list[str]:
        calls.append(1)
        return next(answers)

    fake_dns["example.test"] = rebinding
    result = await download(f"http://example.test:{port}/echo-host", dest, LOOPBACK, transport=guard)
    assert dest.read_bytes() == f"example.test:{port}".encode()
    assert result.final_url == f"http://example.test:{port}/echo-host"
    assert len(calls) == 1
    (request,) = guard.requests
    assert request.url.host == "127.0.0.1"
    assert request.headers["host"] == f"example.test:{port}"


# ---------------------------------------------------------------------------------------------
# Redirect refusals and limits


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("/redirect-private", "private"),
        ("/redirect-metadata", "link-local"),
        ("/redirect-to?url=http://[::ffff:10.0.0.1]/", "private"),
        ("/redirect-to?url=http://0.0.0.0:8080/", "unspecified"),
        ("/redirect-to?url=http://internal.test/", "private"),
        ("/redirect-to?url=file:///etc/passwd", "scheme"),
        ("/redirect-to?url=http://admin:pw@127.0.0.1/", "userinfo"),
    ],
)
async def test_redirect_targets_are_checked_again(
    path: str, rule: str, base: str, dest: Path, guard: GuardTransport, fake_dns: FakeDns
) -> None:
    fake_dns["internal.test"] = lambda: ["10.20.30.40"]
    with pytest.raises(UrlNotAllowed) as caught:
        await download(f"{base}{path}", dest, LOOPBACK, transport=guard)
    assert caught.value.extra["rule"] == rule
    assert caught.value.detail.startswith("The redirect target is not allowed")
    assert [r.url.host for r in guard.requests] == ["127.0.0.1"]
    assert_clean(dest)


@pytest.mark.parametrize("path", ["/hop/4", "/redirect-loop"])
async def test_too_many_redirects(path: str, base: str, dest: Path, guard: GuardTransport) -> None:
    with pytest.raises(UrlFetchFailed, match="Too many redirects"):
        await download(f"{base}{path}", dest, LOOPBACK, transport=guard)
    assert len(guard.requests) == LOOPBACK.max_redirects + 1
    assert_clean(dest)


async def test_redirects_can_be_turned_off(base: str, dest: Path, guard: GuardTransport) -> None:
    policy = UrlPolicy(allow_loopback=True, max_redirects=0)
    with pytest.raises(UrlFetchFailed, match="Too many redirects"):
        await download(f"{base}/redirect-ok", dest, policy, transport=guard)
    assert_clean(dest)


# ---------------------------------------------------------------------------------------------
# Upstream failures, size and time


@pytest.mark.parametrize(("path", "status"), [("/404", 404), ("/500", 500), ("/redirect-no-location", 302)])
async def test_non_2xx_fails(path: str, status: int, base: str, dest: Path, guard: GuardTransport) -> None:
    with pytest.raises(UrlFetchFailed, match=str(status)):
        await download(f"{base}{path}", dest, LOOPBACK, transport=guard)
    assert_clean(dest)


async def test_compressed_body_is_refused(base: str, dest: Path, guard: GuardTransport) -> None:
    with pytest.raises(UrlFetchFailed, match="gzip"):
        await download(f"{base}/gzip", dest, LOOPBACK, transport=guard)
    assert_clean(dest)


@pytest.mark.parametrize("mode", ["length", "chunked", "close"])
async def test_size_limit_while_streaming(mode: str, base: str, dest: Path, guard: GuardTransport) -> None:
    result = await download(f"{base}/bytes?n={LIMIT}&mode={mode}", dest, LOOPBACK, transport=guard)
    assert result.size == LIMIT == dest.stat().st_size
    dest.unlink()
    with pytest.raises(UrlTooLarge) as caught:
        await download(f"{base}/bytes?n={LIMIT + 1}&mode={mode}", dest, LOOPBACK, transport=guard)
    assert caught.value.status == 413
    assert_clean(dest)


async def test_declared_length_over_the_limit_is_refused_before_reading(
    base: str, dest: Path, guard: GuardTransport
) -> None:
    started = time.monotonic()
    with pytest.raises(UrlTooLarge, match=str(LIMIT * 5)):
        await download(f"{base}/big", dest, LOOPBACK, transport=guard)
    assert time.monotonic() - started < LOOPBACK.read_timeout
    assert_clean(dest)


@pytest.mark.parametrize("path", ["/slow", "/stall-body"])
async def test_read_timeout(path: str, base: str, dest: Path, guard: GuardTransport) -> None:
    policy = UrlPolicy(allow_loopback=True, read_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(UrlFetchFailed, match="sent nothing for 0.3 s"):
        await download(f"{base}{path}", dest, policy, transport=guard)
    assert time.monotonic() - started < 2
    assert_clean(dest)


async def test_total_deadline(base: str, dest: Path, guard: GuardTransport) -> None:
    policy = UrlPolicy(allow_loopback=True, read_timeout=1, total_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(UrlFetchFailed, match="longer than 0.5 s"):
        await download(f"{base}/drip", dest, policy, transport=guard)
    assert time.monotonic() - started < 1.5
    assert_clean(dest)


async def test_connection_refused(dest: Path, guard: GuardTransport) -> None:
    with socket.socket() as sock:  # a port that nobody listens on
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]
    with pytest.raises(UrlFetchFailed, match="Could not connect"):
        await download(f"http://127.0.0.1:{free}/", dest, LOOPBACK, transport=guard)
    assert_clean(dest)


async def test_cancellation_removes_dest(base: str, dest: Path, guard: GuardTransport) -> None:
    with anyio.move_on_after(0.3):
        await download(f"{base}/stall-body", dest, LOOPBACK, transport=guard)
    assert_clean(dest)


# ---------------------------------------------------------------------------------------------
# TLS: SNI and certificate verification use the host name, the connection the checked address


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, list[str]]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        + ["-nodes", "-days", "1", "-subj", "/CN=example.test", "-addext", "subjectAltName=DNS:example.test"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    seen_sni: list[str] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def record_sni(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        seen_sni.append(name or "")

    context.sni_callback = record_sni  # type: ignore[assignment]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    for port in _start(server):
        yield port, cert, seen_sni


@pytest.fixture
async def tls_guard(tls_server: tuple[str, Path, list[str]]) -> GuardTransport:
    client_context = ssl.create_default_context(cafile=str(tls_server[1]))
    transport = GuardTransport(
        httpx.AsyncHTTPTransport(
            verify=client_context, retries=0, limits=httpx.Limits(max_keepalive_connections=0)
        )
    )
    yield transport
    await transport.aclose()


async def test_https_uses_the_host_name_for_sni_and_verification(
    tls_server: tuple[str, Path, list[str]], tls_guard: GuardTransport, dest: Path, fake_dns: FakeDns
) -> None:
    port, _, seen_sni = tls_server
    fake_dns["example.test"] = lambda: ["127.0.0.1"]
    result = await download(f"https://example.test:{port}/image.jpg", dest, LOOPBACK, transport=tls_guard)
    assert result.final_url == f"https://example.test:{port}/image.jpg"
    assert dest.read_bytes() == JPEG
    (request,) = tls_guard.requests
    assert request.url.host == "127.0.0.1"
    assert request.extensions["sni_hostname"] == "example.test"
    assert "example.test" in seen_sni


async def test_https_certificate_for_another_name_fails(
    tls_server: tuple[str, Path, list[str]], tls_guard: GuardTransport, dest: Path, fake_dns: FakeDns
) -> None:
    port = tls_server[0]
    fake_dns["other.test"] = lambda: ["127.0.0.1"]
    with pytest.raises(UrlFetchFailed, match="TLS"):
        await download(f"https://other.test:{port}/image.jpg", dest, LOOPBACK, transport=tls_guard)
    assert_clean(dest)
