"""Small core pieces: ids, sizes, settings, API-key matching, filename sanitizing."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from app.core.config import Settings
from app.core.errors import DatabaseUnavailable
from app.core.ids import is_uuid4, new_image_id, normalize_uuid4
from app.core.security import JwtConfig, decode_token, match_api_key
from app.core.units import human_size
from app.services.multipart.reader import sanitize_filename


def test_ids() -> None:
    assert is_uuid4(new_image_id())
    upper = str(uuid.uuid4()).upper()
    assert normalize_uuid4(upper) == upper.lower()
    for bad in (str(uuid.uuid1()), uuid.uuid4().hex, "urn:uuid:" + str(uuid.uuid4()), "", "x" * 36):
        assert not is_uuid4(bad)
        with pytest.raises(ValueError):
            normalize_uuid4(bad)


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.00 KB"), (1_520_435, "1.45 MB"), (5 * 1024**3, "5.00 GB")],
)
def test_human_size(size: int, text: str) -> None:
    assert human_size(size) == text


def test_settings_parse_comma_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEYS", "a, b,,c")
    monkeypatch.setenv("ALLOWED_FORMATS", "JPEG")
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example,https://b.example")
    settings = Settings(_env_file=None)
    assert settings.api_keys == ["a", "b", "c"]
    assert settings.allowed_formats == ["jpeg"]
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    monkeypatch.setenv("ALLOWED_FORMATS", "jpeg,bmp")
    with pytest.raises(ValidationError):
        Settings(_env_file=None)


def test_secret_key_must_be_long_enough_for_hs256(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_KEY", "short")
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        Settings(_env_file=None)
    monkeypatch.setenv("SECRET_KEY", "k" * 32)
    assert Settings(_env_file=None).secret_key.get_secret_value() == "k" * 32


def test_a_stall_threshold_under_two_heartbeats_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOB_HEARTBEAT_SECONDS", "2")
    monkeypatch.setenv("JOB_STALLED_AFTER_SECONDS", "3")
    with pytest.raises(ValidationError, match="at least twice JOB_HEARTBEAT_SECONDS"):
        Settings(_env_file=None)
    monkeypatch.setenv("JOB_STALLED_AFTER_SECONDS", "4")
    assert Settings(_env_file=None).job_stalled_after_seconds == 4


def test_match_api_key() -> None:
    assert match_api_key("k1", ["k1", "k2"]) is not None
    assert match_api_key("k2", ["k1", "k2"]) != match_api_key("k1", ["k1", "k2"])
    assert match_api_key("k3", ["k1", "k2"]) is None
    assert match_api_key(None, ["k1"]) is None


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("photo.jpg", "photo.jpg"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\face.png", "face.png"),
        ("a\r\nX-Evil: 1.jpg", "aX-Evil: 1.jpg"),
        ("nul\x00byte.jpg", "nulbyte.jpg"),
        ("..", None),
        ("", None),
        (None, None),
    ],
)
def test_sanitize_filename(raw: str | None, clean: str | None) -> None:
    assert sanitize_filename(raw) == clean


def test_a_signing_key_not_loaded_yet_is_503_never_an_empty_key() -> None:
    """SECRET_KEY unset and the database not reached yet: no token is signed or accepted."""
    config = JwtConfig(secret=None, issuer="i", audience="a")
    with pytest.raises(DatabaseUnavailable):
        decode_token(config, "e30.e30.sig", "access")
