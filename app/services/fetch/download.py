"""Safe download of an image URL (SSRF-hardened): public addresses only, bounded in size and time.

Every hop of a download goes through the same steps:

1. The URL and every address its host resolves to are checked (`app.services.fetch.url_policy`).
2. The request goes to the checked address itself (an IP-literal URL with the original `Host`
   header, and for https the `sni_hostname` extension so that SNI and certificate verification
   use the host name): no second DNS lookup that could rebind to another address.
3. Redirects are followed by hand, at most `max_redirects`, each target checked from scratch.

The body streams into `dest` (created exclusively) with `max_bytes` enforced while reading; on
any failure `dest` is removed. The caller validates the bytes as an image.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import ssl
from dataclasses import dataclass
from io import FileIO
from pathlib import Path

import anyio
import httpx

from app.core.errors import UrlFetchFailed, UrlTooLarge
from app.services.fetch.url_policy import (
    IPAddress,
    Target,
    UrlPolicy,
    checked_addresses,
    checked_target,
    not_allowed,
)
from app.storage.atomic import unlink_quietly, write_all

logger = logging.getLogger("app.fetch")

USER_AGENT = "image-analysis-service/0.1 (url-fetch)"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class Downloaded:
    """A finished download: the URL it finally came from (after redirects), its media type, its size."""

    final_url: str
    content_type: str | None
    size: int


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
    transport: httpx.AsyncBaseTransport, target: Target, addresses: list[IPAddress], policy: UrlPolicy
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
        write_all(file, chunk)
    return size


async def _fetch(
    url: str, file: FileIO, policy: UrlPolicy, transport: httpx.AsyncBaseTransport
) -> Downloaded:
    where = "URL"
    target = checked_target(url, policy, where)
    for hop in range(policy.max_redirects + 1):
        addresses = await checked_addresses(target, policy, where)
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
                    raise not_allowed("redirect target", "it is not a valid URL", "invalid_url") from None
                where = "redirect target"
                target = checked_target(next_url, policy, where)
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
