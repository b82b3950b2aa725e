"""app.core.device_cookies: signed device cookies bound to one username, with an age limit."""

from __future__ import annotations

import pytest

from app.core.device_cookies import MAX_COOKIE_CHARS, DeviceCookies

NOW = 1_700_000_000.0
DAY = 86_400


@pytest.fixture
def cookies() -> DeviceCookies:
    return DeviceCookies(b"k" * 32, max_age_seconds=30 * DAY)


def test_an_issued_cookie_reads_back_for_its_user(cookies: DeviceCookies) -> None:
    value = cookies.issue("alice", now=NOW)
    device = cookies.read(value, "alice", now=NOW + 10)
    assert device is not None
    assert device.issued_at == int(NOW)
    assert value.startswith("v1.") and device.nonce == value.split(".")[1]
    assert "alice" not in value


def test_each_cookie_has_its_own_nonce(cookies: DeviceCookies) -> None:
    first, second = cookies.issue("alice", now=NOW), cookies.issue("alice", now=NOW)
    assert first != second
    assert cookies.read(first, "alice", now=NOW).nonce != cookies.read(second, "alice", now=NOW).nonce  # type: ignore[union-attr]


def test_a_cookie_is_not_valid_for_another_user(cookies: DeviceCookies) -> None:
    value = cookies.issue("alice", now=NOW)
    assert cookies.read(value, "bob", now=NOW) is None


def test_a_cookie_signed_with_another_secret_is_refused(cookies: DeviceCookies) -> None:
    other = DeviceCookies(b"o" * 32, max_age_seconds=30 * DAY)
    assert cookies.read(other.issue("alice", now=NOW), "alice", now=NOW) is None


def test_the_age_limit_and_clock_skew(cookies: DeviceCookies) -> None:
    value = cookies.issue("alice", now=NOW)
    assert cookies.read(value, "alice", now=NOW + 30 * DAY) is not None
    assert cookies.read(value, "alice", now=NOW + 30 * DAY + 1) is None
    assert cookies.read(value, "alice", now=NOW - 300) is not None  # a replica's clock a little behind
    assert cookies.read(value, "alice", now=NOW - 301) is None


def _replace(value: str, index: int, part: str) -> str:
    parts = value.split(".")
    parts[index] = part
    return ".".join(parts)


def test_tampered_or_malformed_cookies_are_refused(cookies: DeviceCookies) -> None:
    value = cookies.issue("alice", now=NOW)
    assert cookies.read(value, "alice", now=NOW) is not None
    bad = [
        None,
        "",
        _replace(value, 0, "v2"),
        _replace(value, 1, "AAAAAAAAAAAAAAAAAAAAAA"),
        _replace(value, 2, str(int(NOW) + 1)),
        _replace(value, 2, "１７"),  # full-width digits: isdigit() but not ASCII
        _replace(value, 2, "-1"),
        _replace(value, 3, "x" * 43),
        value + ".extra",
        value.rsplit(".", 1)[0],
        value + "A" * MAX_COOKIE_CHARS,
        "\udcff.\udcff.1.\udcff",
    ]
    for candidate in bad:
        assert cookies.read(candidate, "alice", now=NOW) is None, candidate


def test_the_secret_may_be_loaded_lazily_and_only_once() -> None:
    calls: list[int] = []

    def load() -> bytes:
        calls.append(1)
        return b"k" * 32

    lazy = DeviceCookies(load, max_age_seconds=DAY)
    assert calls == []
    value = lazy.issue("alice", now=NOW)
    assert lazy.read(value, "alice", now=NOW) is not None
    assert calls == [1]
    eager = DeviceCookies(b"k" * 32, max_age_seconds=DAY)
    assert eager.read(value, "alice", now=NOW) is not None  # same key derived from the same secret


def test_non_ascii_usernames_are_bound_too(cookies: DeviceCookies) -> None:
    value = cookies.issue("jürgen", now=NOW)
    assert cookies.read(value, "jürgen", now=NOW) is not None
    assert cookies.read(value, "jurgen", now=NOW) is None
