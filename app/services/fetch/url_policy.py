"""What a URL download may reach: the fetch policy, address rules, URL checks and resolution.

Before any connection, a URL passes static checks (scheme http/https, no userinfo, a
well-formed host, the port); then its host is resolved once, in a worker thread, and EVERY
address it resolves to must be public (`blocked_rule`): loopback, private, link-local
(cloud metadata), multicast, reserved, unspecified, shared (CGNAT), benchmarking and
documentation ranges are refused, and IPv6 addresses that embed an IPv4 one (IPv4-mapped,
IPv4-compatible, 6to4, NAT64) are judged by the embedded address. Numeric tricks
(`2130706433`, `0x7f.1`) are judged after resolution. `app.services.fetch.download` connects to
the checked addresses only.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from collections.abc import Collection
from dataclasses import dataclass

import anyio
import anyio.to_thread
import httpx

from app.core.errors import UrlFetchFailed, UrlNotAllowed

logger = logging.getLogger("app.fetch")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MiB = 1024 * 1024
SUPPORTED_SCHEMES = frozenset({"http", "https"})
DEFAULT_PORTS = {"http": 80, "https": 443}

# A host name after IDNA encoding (httpx does that): letters, digits, '-', '_' and dots.
_HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*)(\.[a-z0-9_-]+)*\.?")


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
class Target:
    """Where a checked URL points."""

    url: httpx.URL  # as given (host name), without fragment
    host: str  # ASCII host: IDNA-encoded name or IP literal without brackets
    port: int


def not_allowed(where: str, reason: str, rule: str) -> UrlNotAllowed:
    """The error for a refused URL, naming the rule that refused it."""
    return UrlNotAllowed(f"The {where} is not allowed: {reason}", extra={"rule": rule})


def check_url(url: str | httpx.URL, policy: UrlPolicy, *, where: str = "URL") -> httpx.URL:
    """The parsed URL if it passes the static checks (scheme, userinfo, host, port); else UrlNotAllowed."""
    return checked_target(url, policy, where).url


def checked_target(url: str | httpx.URL, policy: UrlPolicy, where: str) -> Target:
    """The URL's target (URL, ASCII host, port) if it passes the static checks; else UrlNotAllowed."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise not_allowed(where, "it is not a valid URL", "invalid_url") from None
    scheme = parsed.scheme.lower()
    if scheme not in policy.allowed_schemes:
        allowed = ", ".join(policy.allowed_schemes)
        raise not_allowed(where, f"only {allowed} URLs can be fetched", "scheme")
    if parsed.userinfo:
        raise not_allowed(where, "URLs with credentials (user:password@) are refused", "userinfo")
    try:
        host = parsed.raw_host.decode("ascii").lower()
    except UnicodeError:  # raw_host itself raises UnicodeEncodeError for e.g. non-ASCII zone ids
        raise not_allowed(where, "the host name is invalid", "invalid_host") from None
    if not host:
        raise not_allowed(where, "it has no host", "invalid_host")
    if ":" not in host and (len(host) > 253 or not _HOST_NAME.fullmatch(host)):
        raise not_allowed(where, "the host name is invalid", "invalid_host")
    port = parsed.port if parsed.port is not None else DEFAULT_PORTS[scheme]
    if policy.allowed_ports is not None and port not in policy.allowed_ports:
        raise not_allowed(where, f"port {port} is not allowed", "port")
    return Target(url=parsed.copy_with(fragment=None), host=host, port=port)


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


async def checked_addresses(target: Target, policy: UrlPolicy, where: str) -> list[IPAddress]:
    """The host's addresses, every one of them allowed; else UrlNotAllowed (or UrlFetchFailed)."""
    literal: IPAddress | None = None
    if ":" in target.host:
        try:
            literal = ipaddress.ip_address(target.host)
        except ValueError:
            raise not_allowed(where, "the host is not a valid IPv6 address", "invalid_host") from None
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
            raise not_allowed(where, f"its host {verb} {_RULE_TEXT.get(rule, rule)}", rule)
    return addresses
