"""URL policy: which addresses a download may reach, and the static checks of a URL."""

from __future__ import annotations

import ipaddress

import pytest

from app.core.errors import AppError, BadRequest, PayloadTooLarge, UrlFetchFailed, UrlNotAllowed, UrlTooLarge
from app.services.fetch.url_policy import UrlPolicy, blocked_rule, check_url

DEFAULT = UrlPolicy()


# ---------------------------------------------------------------------------------------------
# Address rules


@pytest.mark.parametrize(
    ("address", "rule"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "shared"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("255.255.255.255", "reserved"),
        ("240.0.0.1", "reserved"),
        ("198.18.0.1", "benchmarking"),
        ("192.0.2.1", "documentation"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::127.0.0.1", "loopback"),
        ("::8.8.8.8", "reserved"),
        ("64:ff9b::a00:1", "private"),
        ("64:ff9b::7f00:1", "loopback"),
        ("2002:7f00:1::", "loopback"),
        ("2002:a9fe:a9fe::", "link-local"),
        ("2001::1", "teredo"),
        ("2001:db8::1", "documentation"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("fec0::1", "reserved"),
        ("ff02::1", "multicast"),
        ("100::1", "reserved"),
        ("8.8.8.8", None),
        ("93.184.216.34", None),
        ("172.32.0.1", None),
        ("::ffff:8.8.8.8", None),
        ("64:ff9b::808:808", None),
        ("2002:808:808::1", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_blocked_rule(address: str, rule: str | None) -> None:
    assert blocked_rule(ipaddress.ip_address(address)) == rule


def test_allow_loopback_admits_only_plain_loopback() -> None:
    for address in ("127.0.0.1", "127.1.2.3", "::1"):
        assert blocked_rule(ipaddress.ip_address(address), allow_loopback=True) is None
    for address in ("::ffff:127.0.0.1", "2002:7f00:1::", "10.0.0.1", "169.254.169.254", "0.0.0.0", "::"):
        assert blocked_rule(ipaddress.ip_address(address), allow_loopback=True) is not None


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        UrlPolicy(allowed_schemes=("http", "ftp"))
    with pytest.raises(ValueError):
        UrlPolicy(read_timeout=0)
    assert UrlPolicy(allowed_ports={443}).allowed_ports == frozenset({443})
    assert UrlPolicy(allowed_schemes=("HTTPS",)).allowed_schemes == ("https",)


def test_error_classes() -> None:
    assert issubclass(UrlNotAllowed, BadRequest) and (UrlNotAllowed.status, UrlNotAllowed.code) == (
        400,
        "url_not_allowed",
    )
    assert issubclass(UrlFetchFailed, BadRequest) and UrlFetchFailed.code == "url_fetch_failed"
    assert issubclass(UrlTooLarge, PayloadTooLarge) and (UrlTooLarge.status, UrlTooLarge.code) == (
        413,
        "url_too_large",
    )
    assert issubclass(UrlTooLarge, AppError)


def test_check_url_keeps_the_host_name_and_drops_the_fragment() -> None:
    assert str(check_url("HTTPS://Example.COM/a?b=1#frag", DEFAULT)) == "https://example.com/a?b=1"
