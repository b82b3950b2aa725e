"""One webhook attempt: an SSRF-checked POST, bounded in time, redirects not followed.

The callback URL and every address its host resolves to are checked again at each attempt
(`app.services.fetch.url_policy`, the policy of URL fetches: DNS may have changed since the
URL was registered); the request goes to a checked address itself, with the original `Host`
(and the host name for TLS SNI and certificate checks), so no second lookup can rebind it.
"""

from __future__ import annotations

import functools
import ipaddress
import ssl
from dataclasses import dataclass

import anyio
import httpx

from app.core.errors import UrlFetchFailed, UrlNotAllowed
from app.services.fetch.url_policy import UrlPolicy, checked_addresses, checked_target

USER_AGENT = "image-analysis-service/0.1 (webhooks)"
WHERE = "callback URL"


@dataclass(frozen=True)
class Outcome:
    """How an attempt went: the receiver's status (None if none came back) and why it failed."""

    status_code: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.error is None


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


async def check(url: str, policy: UrlPolicy) -> None:
    """UrlNotAllowed (400) unless `url` and every address it resolves to pass `policy`;
    UrlFetchFailed (400) when its host does not resolve."""
    await checked_addresses(checked_target(url, policy, WHERE), policy, WHERE)


async def post(url: str, body: bytes, headers: dict[str, str], policy: UrlPolicy) -> Outcome:
    """POST `body` to `url` once, within `policy.total_timeout`; 2xx is delivered."""
    with anyio.move_on_after(policy.total_timeout):
        try:
            return await _post(url, body, headers, policy)
        except (UrlNotAllowed, UrlFetchFailed) as exc:
            return Outcome(None, exc.detail[:255])
    return Outcome(None, f"No answer within {policy.total_timeout:g} s")


async def _post(url: str, body: bytes, headers: dict[str, str], policy: UrlPolicy) -> Outcome:
    target = checked_target(url, policy, WHERE)
    addresses = await checked_addresses(target, policy, WHERE)
    sent = {
        **headers,
        "Host": target.url.netloc.decode("ascii"),
        "User-Agent": USER_AGENT,
        "Content-Type": "application/json",
        "Connection": "close",
    }
    extensions: dict[str, object] = {"timeout": policy.timeout().as_dict()}
    if target.url.scheme == "https":
        extensions["sni_hostname"] = target.host
    transport = httpx.AsyncHTTPTransport(
        verify=_ssl_context(), trust_env=False, limits=httpx.Limits(max_keepalive_connections=0), retries=0
    )
    failure = "Could not connect to the host"
    async with transport:
        for address in addresses:
            connect_to = address
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                connect_to = address.ipv4_mapped
            request = httpx.Request(
                "POST",
                target.url.copy_with(host=str(connect_to)),
                headers=sent,
                content=body,
                extensions=extensions,
            )
            try:
                response = await transport.handle_async_request(request)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                continue  # the next address
            except httpx.TimeoutException:
                return Outcome(None, f"The receiver sent nothing for {policy.read_timeout:g} s")
            except httpx.HTTPError as exc:
                return Outcome(None, f"The exchange failed ({type(exc).__name__})")
            await response.aclose()
            status = response.status_code
            if 200 <= status < 300:
                return Outcome(status, None)
            return Outcome(status, f"The receiver answered {status}")
    return Outcome(None, failure)
