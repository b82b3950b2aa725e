"""Safe download of an image URL (SSRF-hardened): public addresses only, bounded in size and time.

Every hop of a download goes through the same steps:

1. Static checks of the URL: scheme (http/https), no userinfo, a well-formed host, the port.
2. The host is resolved once, in a worker thread; EVERY address it resolves to must be public
   (`blocked_rule`): loopback, private, link-local (cloud metadata), multicast, reserved,
   unspecified, shared (CGNAT), benchmarking and documentation ranges are refused, and IPv6
   addresses that embed an IPv4 one (IPv4-mapped, IPv4-compatible, 6to4, NAT64) are judged by
   the embedded address. Numeric tricks (`2130706433`, `0x7f.1`) are judged after resolution.
3. The request goes to the checked address itself (an IP-literal URL with the original `Host`
   header, and for https the `sni_hostname` extension so that SNI and certificate verification
   use the host name): no second DNS lookup that could rebind to another address.
4. Redirects are followed by hand, at most `max_redirects`, each target checked from scratch.

The body streams into `dest` (created exclusively) with `max_bytes` enforced while reading; on
any failure `dest` is removed. The caller validates the bytes as an image.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
import socket
import ssl
from collections.abc import Collection
from dataclasses import dataclass
from io import FileIO
from pathlib import Path

import anyio
import anyio.to_thread
import httpx

from app.core.errors import BadRequest, PayloadTooLarge
from app.storage.atomic import unlink_quietly

logger = logging.getLogger("app.fetch")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MiB = 1024 * 1024
USER_AGENT = "image-analysis-service/0.1 (url-fetch)"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
SUPPORTED_SCHEMES = frozenset({"http", "https"})
DEFAULT_PORTS = {"http": 80, "https": 443}

# A host name after IDNA encoding (httpx does that): letters, digits, '-', '_' and dots.
_HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*)(\.[a-z0-9_-]+)*\.?")


class UrlNotAllowed(BadRequest):
    code, default_detail = "url_not_allowed", "The URL is not allowed"


class UrlFetchFailed(BadRequest):
    code, default_detail = "url_fetch_failed", "The URL could not be downloaded"


class UrlTooLarge(PayloadTooLarge):
    code, default_detail = "url_too_large", "The resource at the URL is too large"


@dataclass(frozen=True)
class UrlPolicy:
    """What a download may do. `allow_loopback` is for tests only: it lets 127.0.0.0/8 and ::1 through."""

    allowed_schemes: tuple[str, ...] = ("http", "https")
    max_redirects: int = 3
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    total_timeout: float = 30.0
    max_bytes: int = 5 * MiB
    allow_loopback: bool = False
    allowed_ports: frozenset[int] | None = None

    def __post_init__(self) -> None:
        schemes = tuple(s.lower() for s in self.allowed_schemes)
        if not schemes or not set(schemes) <= SUPPORTED_SCHEMES:
            raise ValueError(f"allowed_schemes must be a non-empty subset of {sorted(SUPPORTED_SCHEMES)}")
        object.__setattr__(self, "allowed_schemes", schemes)
        if self.allowed_ports is not None:
            ports: Collection[int] = self.allowed_ports
            object.__setattr__(self, "allowed_ports", frozenset(ports))
        if self.max_redirects < 0 or self.max_bytes < 1:
            raise ValueError("max_redirects must be >= 0 and max_bytes >= 1")
        if min(self.connect_timeout, self.read_timeout, self.total_timeout) <= 0:
            raise ValueError("timeouts must be positive")

    def timeout(self) -> httpx.Timeout:
        """The per-operation httpx timeouts of one request."""
        return httpx.Timeout(
            connect=self.connect_timeout,
            read=self.read_timeout,
            write=self.read_timeout,
            pool=self.connect_timeout,
        )


@dataclass(frozen=True)
class Downloaded:
    """A finished download: the URL it finally came from (after redirects), its media type, its size."""

    final_url: str
    content_type: str | None
    size: int


# ---------------------------------------------------------------------------------------------
# Address rules

_RULE_TEXT = {
    "loopback": "a loopback address",
    "private": "a private-network address",
    "link-local": "a link-local address (this includes cloud metadata endpoints)",
    "multicast": "a multicast address",
    "reserved": "a reserved or non-routable address",
    "unspecified": "an unspecified address",
    "shared": "a shared (carrier-grade NAT) address",
    "benchmarking": "a benchmarking address",
    "documentation": "a documentation address",
    "teredo": "a Teredo tunnel address",
}


def _nets(*pairs: tuple[str, str]) -> tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...]:
    return tuple((ipaddress.ip_network(net), rule) for net, rule in pairs)


# IANA special-purpose registries; the first match decides the rule that is reported.
_V4_BLOCKED = _nets(
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "reserved"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
)
_V6_BLOCKED = _nets(
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "private"),
    ("2001::/32", "teredo"),
    ("2001:2::/48", "benchmarking"),
    ("2001:db8::/32", "documentation"),
    ("2001::/23", "reserved"),
    ("3fff::/20", "documentation"),
    ("fc00::/7", "private"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "reserved"),
    ("ff00::/8", "multicast"),
)
_V6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOOPBACK_V4 = ipaddress.IPv4Network("127.0.0.0/8")
_LOOPBACK_V6 = ipaddress.IPv6Address("::1")


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries: IPv4-mapped, IPv4-compatible, NAT64 or 6to4."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _V4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _stdlib_rule(address: IPAddress) -> str | None:
    """A second opinion from the standard library's flags (never lets through what the tables block)."""
    for flag, rule in (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_private", "private"),
        ("is_reserved", "reserved"),
        ("is_site_local", "reserved"),
    ):
        if getattr(address, flag, False):
            return rule
    return None if address.is_global else "reserved"


def blocked_rule(address: IPAddress, *, allow_loopback: bool = False) -> str | None:
    """The rule that forbids connecting to `address` (e.g. "loopback", "private"), or None if public.

    `allow_loopback` admits 127.0.0.0/8 and ::1 only (not loopback embedded in IPv6 forms).
    """
    if allow_loopback and (address in _LOOPBACK_V4 if address.version == 4 else address == _LOOPBACK_V6):
        return None
    if address.version == 6:
        assert isinstance(address, ipaddress.IPv6Address)
        if address.scope_id:
            return "link-local"
        embedded = _embedded_v4(address)
        if embedded is not None:
            rule = blocked_rule(embedded)
            if rule is not None:
                return rule
            # IPv4-compatible addresses are deprecated and never routed, whatever they embed.
            return "reserved" if address in _V4_COMPATIBLE else None
        table = _V6_BLOCKED
    else:
        table = _V4_BLOCKED
    for network, rule in table:
        if address in network:
            return rule
    if address.version == 6 and address not in _V6_GLOBAL_UNICAST:
        return "reserved"
    return _stdlib_rule(address)


# ---------------------------------------------------------------------------------------------
# URL checks and resolution


@dataclass(frozen=True)
class _Target:
    url: httpx.URL  # as given (host name), without fragment
    host: str  # ASCII host: IDNA-encoded name or IP literal without brackets
    port: int


def _not_allowed(where: str, reason: str, rule: str) -> UrlNotAllowed:
    return UrlNotAllowed(f"The {where} is not allowed: {reason}", extra={"rule": rule})


def check_url(url: str | httpx.URL, policy: UrlPolicy, *, where: str = "URL") -> httpx.URL:
    """The parsed URL if it passes the static checks (scheme, userinfo, host, port); else UrlNotAllowed."""
    return _check_url(url, policy, where).url


def _check_url(url: str | httpx.URL, policy: UrlPolicy, where: str) -> _Target:
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise _not_allowed(where, "it is not a valid URL", "invalid_url") from None
    scheme = parsed.scheme.lower()
    if scheme not in policy.allowed_schemes:
        allowed = ", ".join(policy.allowed_schemes)
        raise _not_allowed(where, f"only {allowed} URLs can be fetched", "scheme")
    if parsed.userinfo:
        raise _not_allowed(where, "URLs with credentials (user:password@) are refused", "userinfo")
    try:
        host = parsed.raw_host.decode("ascii").lower()
    except UnicodeError:  # raw_host itself raises UnicodeEncodeError for e.g. non-ASCII zone ids
        raise _not_allowed(where, "the host name is invalid", "invalid_host") from None
    if not host:
        raise _not_allowed(where, "it has no host", "invalid_host")
    if ":" not in host and (len(host) > 253 or not _HOST_NAME.fullmatch(host)):
        raise _not_allowed(where, "the host name is invalid", "invalid_host")
    port = parsed.port if parsed.port is not None else DEFAULT_PORTS[scheme]
    if policy.allowed_ports is not None and port not in policy.allowed_ports:
        raise _not_allowed(where, f"port {port} is not allowed", "port")
    return _Target(url=parsed.copy_with(fragment=None), host=host, port=port)


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to, in the resolver's order (blocking: run it in a thread)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses: list[IPAddress] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(str(sockaddr[0]))
        if address not in addresses:
            addresses.append(address)
    return addresses


async def _checked_addresses(target: _Target, policy: UrlPolicy, where: str) -> list[IPAddress]:
    """The host's addresses, every one of them allowed; else UrlNotAllowed (or UrlFetchFailed)."""
    literal: IPAddress | None = None
    if ":" in target.host:
        try:
            literal = ipaddress.ip_address(target.host)
        except ValueError:
            raise _not_allowed(where, "the host is not a valid IPv6 address", "invalid_host") from None
    else:
        try:
            literal = ipaddress.IPv4Address(target.host)
        except ValueError:
            literal = None
    if literal is not None:
        addresses = [literal]
        verb = "is"
    else:
        try:
            # `resolve` is looked up at call time, so tests can stand in a fake resolver.
            addresses = await anyio.to_thread.run_sync(
                resolve, target.host, target.port, abandon_on_cancel=True
            )
        except (socket.gaierror, UnicodeError):
            raise UrlFetchFailed(f"The host {target.host!r} could not be resolved") from None
        if not addresses:
            raise UrlFetchFailed(f"The host {target.host!r} has no IPv4 or IPv6 address")
        verb = "resolves to"
    for address in addresses:
        rule = blocked_rule(address, allow_loopback=policy.allow_loopback)
        if rule is not None:
            logger.warning("refused %s %s: %s is %s", where, target.host, address, rule)
            raise _not_allowed(where, f"its host {verb} {_RULE_TEXT.get(rule, rule)}", rule)
    return addresses


# ---------------------------------------------------------------------------------------------
# Transfer


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


def _new_transport() -> httpx.AsyncHTTPTransport:
    # No keep-alive: a pooled connection (keyed by IP) must never serve another host's TLS name.
    return httpx.AsyncHTTPTransport(
        verify=_default_ssl_context(),
        trust_env=False,
        limits=httpx.Limits(max_connections=4, max_keepalive_connections=0),
        retries=0,
    )


def _has_cause(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _transfer_error(exc: httpx.HTTPError, policy: UrlPolicy) -> UrlFetchFailed:
    """A client-safe description of a transport failure (no addresses, no OS error text)."""
    if isinstance(exc, httpx.ConnectTimeout):
        detail = f"Could not connect to the host within {policy.connect_timeout:g} s"
    elif isinstance(exc, httpx.ReadTimeout):
        detail = f"The server sent nothing for {policy.read_timeout:g} s"
    elif isinstance(exc, httpx.TimeoutException):
        detail = "The transfer timed out"
    elif isinstance(exc, httpx.ConnectError) and _has_cause(exc, ssl.SSLError):
        detail = "The TLS handshake with the host failed (certificate or protocol error)"
    elif isinstance(exc, httpx.ConnectError):
        detail = "Could not connect to the host"
    elif isinstance(exc, httpx.ProtocolError):
        detail = "The server sent an invalid HTTP response"
    elif isinstance(exc, httpx.NetworkError):
        detail = "The connection to the host broke during the transfer"
    else:
        detail = "The download failed"
    return UrlFetchFailed(detail)


async def _send(
    transport: httpx.AsyncBaseTransport, target: _Target, addresses: list[IPAddress], policy: UrlPolicy
) -> httpx.Response:
    """Send the GET to the checked addresses in turn (the next one only if connecting failed)."""
    netloc = target.url.netloc.decode("ascii")
    headers = {
        "Host": netloc,
        "User-Agent": USER_AGENT,
        "Accept": "image/*",
        "Accept-Encoding": "identity",
        "Connection": "close",
    }
    extensions: dict[str, object] = {"timeout": policy.timeout().as_dict()}
    if target.url.scheme == "https":
        extensions["sni_hostname"] = target.host
    failure: httpx.HTTPError | None = None
    for address in addresses:
        connect_to: IPAddress = address
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            connect_to = address.ipv4_mapped  # a public IPv4 in IPv6 clothing: connect over IPv4
        request = httpx.Request(
            "GET", target.url.copy_with(host=str(connect_to)), headers=headers, extensions=extensions
        )
        try:
            response = await transport.handle_async_request(request)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            failure = exc
            continue
        except httpx.HTTPError as exc:
            raise _transfer_error(exc, policy) from exc
        response.request = request
        return response
    assert failure is not None
    raise _transfer_error(failure, policy) from failure


def _media_type(response: httpx.Response) -> str | None:
    value = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return value or None


async def _save_body(response: httpx.Response, file: FileIO, policy: UrlPolicy) -> int:
    declared = response.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > policy.max_bytes:
        raise UrlTooLarge(f"The resource is {int(declared)} bytes; the limit is {policy.max_bytes} bytes")
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise UrlFetchFailed(
            f"The server sent a {encoding!r}-encoded body; only uncompressed bodies are read"
        )
    size = 0
    async for chunk in response.aiter_raw():
        size += len(chunk)
        if size > policy.max_bytes:
            raise UrlTooLarge(f"The resource exceeds the limit of {policy.max_bytes} bytes")
        file.write(chunk)
    return size


async def _fetch(
    url: str, file: FileIO, policy: UrlPolicy, transport: httpx.AsyncBaseTransport
) -> Downloaded:
    where = "URL"
    target = _check_url(url, policy, where)
    for hop in range(policy.max_redirects + 1):
        addresses = await _checked_addresses(target, policy, where)
        response = await _send(transport, target, addresses, policy)
        try:
            status = response.status_code
            if status in REDIRECT_STATUSES:
                location = response.headers.get("location")
                if not location:
                    raise UrlFetchFailed(f"The server answered {status} without a Location header")
                if hop == policy.max_redirects:
                    raise UrlFetchFailed(f"Too many redirects (the limit is {policy.max_redirects})")
                try:
                    next_url = target.url.join(location)
                except (httpx.InvalidURL, ValueError):
                    raise _not_allowed("redirect target", "it is not a valid URL", "invalid_url") from None
                where = "redirect target"
                target = _check_url(next_url, policy, where)
                continue
            if not 200 <= status < 300:
                raise UrlFetchFailed(f"The server answered {status}", extra={"upstream_status": status})
            size = await _save_body(response, file, policy)
            return Downloaded(final_url=str(target.url), content_type=_media_type(response), size=size)
        except httpx.HTTPError as exc:
            raise _transfer_error(exc, policy) from exc
        finally:
            await response.aclose()
    raise AssertionError("unreachable")  # pragma: no cover


async def download(
    url: str, dest: Path, policy: UrlPolicy, *, transport: httpx.AsyncBaseTransport | None = None
) -> Downloaded:
    """Download `url` into the new file `dest` under `policy`.

    Raises UrlNotAllowed (400) for URLs or addresses the policy forbids, UrlFetchFailed (400) for
    network errors, timeouts, non-2xx answers and too many redirects, UrlTooLarge (413) past
    `max_bytes`. `dest` must not exist (FileExistsError); on any failure it is removed.
    `transport` is for tests; it must not follow redirects or pool connections across host names.
    """
    file = FileIO(dest, "xb")
    try:
        own = transport is None
        active = _new_transport() if transport is None else transport
        try:
            with anyio.move_on_after(policy.total_timeout) as deadline:
                return await _fetch(url, file, policy, active)
            assert deadline.cancelled_caught
            raise UrlFetchFailed(f"The download took longer than {policy.total_timeout:g} s")
        finally:
            if own:
                await active.aclose()
    except BaseException:
        file.close()
        unlink_quietly(dest)
        raise
    finally:
        file.close()
