"""app.services.accounts.usernames: username identity and the username, password and name rules."""

from __future__ import annotations

import pytest

from app.core.config import Settings
from app.core.errors import ValidationFailed
from app.services.accounts.usernames import (
    MAX_USERNAME,
    check_full_name,
    check_password,
    check_username,
    storable_key,
    username_key,
)


def test_the_key_is_case_and_compatibility_insensitive() -> None:
    assert username_key("Alice") == username_key("ALICE") == "alice"
    assert username_key("ＡＬＩＣＥ") == "alice"  # full-width letters, NFKC
    assert username_key("Straße") == "strasse"  # case folding, not lower()
    assert username_key("ﬁle") == "file"  # the "fi" ligature


def test_storable_key_bounds_the_length_and_refuses_nul() -> None:
    assert storable_key("a" * MAX_USERNAME)
    assert not storable_key("a" * (MAX_USERNAME + 1))
    assert not storable_key("a\x00b")


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("alice", "alice"),
        ("  bob.smith+tag@example-1_x ", "bob.smith+tag@example-1_x"),
        ("Ｊｏｈｎ", "John"),
        ("jürgen", "jürgen"),
        ("abc", "abc"),
        ("a" * MAX_USERNAME, "a" * MAX_USERNAME),
    ],
)
def test_valid_usernames_are_normalized(raw: str, clean: str) -> None:
    assert check_username(raw) == clean


@pytest.mark.parametrize(
    "raw",
    ["ab", "  ab  ", "a" * (MAX_USERNAME + 1), "al ice", "al/ice", "ali\x00ce", "<script>", "ß" * 76, ""],
)
def test_invalid_usernames_name_the_field(raw: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_username(raw)
    assert caught.value.extra["fields"] == ["username"]
    assert caught.value.status == 400


def test_a_case_fold_that_outgrows_the_column_is_refused() -> None:
    assert check_username("ß" * 75) == "ß" * 75  # folds to 150 characters: fits
    with pytest.raises(ValidationFailed):
        check_username("ß" * 76)  # folds to 152


def test_password_length_follows_the_settings() -> None:
    settings = Settings(_env_file=None, password_min_length=10, password_max_length=12)
    check_password("p" * 10, settings)
    check_password("p" * 12, settings)
    for bad in ("p" * 9, "p" * 13, " " * 11, "\t" * 10):
        with pytest.raises(ValidationFailed, match="10 to 12 characters") as caught:
            check_password(bad, settings)
        assert caught.value.extra["fields"] == ["password"]


def test_full_names_refuse_control_characters_only() -> None:
    assert check_full_name(None) is None
    assert check_full_name("Zoë O'Brien-Łukasz") == "Zoë O'Brien-Łukasz"
    for bad in ("Al\x00ice", "a\nb", "a\rb", "a\x1bb", "a\x7fb"):
        with pytest.raises(ValidationFailed) as caught:
            check_full_name(bad)
        assert caught.value.extra["fields"] == ["full_name"]
