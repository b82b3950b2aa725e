"""app.core.security: password hashing, JWT issue/decode (claims, algorithm allowlist), secrets."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from pwdlib.hashers.bcrypt import BcryptHasher

from app.core.errors import Unauthorized
from app.core.security import (
    JwtConfig,
    decode_token,
    hash_password,
    issue_token,
    new_secret,
    secrets_equal,
    verify_password,
)

SECRET = b"s" * 64


@pytest.fixture
def config() -> JwtConfig:
    return JwtConfig(secret=SECRET, issuer="issuer", audience="audience")


def _payload(**overrides: object) -> dict[str, object]:
    now = datetime.now(UTC)
    payload: dict[str, object] = {
        "sub": "alice",
        "jti": "j1",
        "use": "access",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
        "iss": "issuer",
        "aud": "audience",
    }
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not None}


def test_a_password_verifies_against_its_argon2id_hash_only() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("$argon2id$")
    assert stored != hash_password("correct horse")  # salted
    assert verify_password("correct horse", stored) == (True, None)
    assert verify_password("wrong horse", stored) == (False, None)


def test_a_bcrypt_hash_verifies_and_is_upgraded_to_argon2id() -> None:
    legacy = BcryptHasher().hash("old password")
    matches, upgraded = verify_password("old password", legacy)
    assert matches
    assert upgraded is not None and upgraded.startswith("$argon2id$")
    assert verify_password("old password", upgraded) == (True, None)
    assert verify_password("not it", legacy) == (False, None)


@pytest.mark.parametrize("stored", [None, "", "plain-text", "$argon2id$v=19$broken"])
def test_a_missing_or_unreadable_hash_never_verifies(stored: str | None) -> None:
    assert verify_password("anything", stored) == (False, None)


def test_secrets_equal_compares_whole_values_of_any_length() -> None:
    assert secrets_equal("abc", "abc")
    assert not secrets_equal("abc", "abd")
    assert not secrets_equal("abc", "abcd")
    assert not secrets_equal("", "x")
    assert secrets_equal("\udcff", "\udcff")  # an undecodable header byte does not raise


def test_an_issued_token_decodes_to_its_claims(config: JwtConfig) -> None:
    token, claims = issue_token(
        config, subject="alice", use="refresh", lifetime=timedelta(hours=1), family="f1"
    )
    decoded = decode_token(config, token, "refresh")
    assert decoded.subject == "alice"
    assert decoded.jti == claims.jti and len(claims.jti) == 32
    assert decoded.family == "f1"
    assert decoded.expires_at == claims.expires_at
    assert abs((decoded.issued_at - claims.issued_at).total_seconds()) < 0.001
    assert timedelta(minutes=59) < decoded.expires_at - decoded.issued_at <= timedelta(hours=1)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256"


def test_each_token_gets_its_own_jti(config: JwtConfig) -> None:
    ids = {
        issue_token(config, subject="a", use="access", lifetime=timedelta(minutes=1))[1].jti for _ in range(5)
    }
    assert len(ids) == 5


def test_a_refresh_token_is_never_an_access_token_and_back(config: JwtConfig) -> None:
    refresh, _ = issue_token(config, subject="a", use="refresh", lifetime=timedelta(minutes=1))
    access, _ = issue_token(config, subject="a", use="access", lifetime=timedelta(minutes=1))
    with pytest.raises(Unauthorized, match="not an access token"):
        decode_token(config, refresh, "access")
    with pytest.raises(Unauthorized, match="not an refresh token"):
        decode_token(config, access, "refresh")


def test_an_expired_token_is_unauthorized_with_a_bearer_challenge(config: JwtConfig) -> None:
    token, _ = issue_token(config, subject="a", use="access", lifetime=timedelta(seconds=-5))
    with pytest.raises(Unauthorized, match="expired") as caught:
        decode_token(config, token, "access")
    assert caught.value.status == 401
    assert caught.value.headers == {"WWW-Authenticate": "Bearer"}


@pytest.mark.parametrize(
    "change",
    [
        {"iss": "someone-else"},
        {"aud": "another-audience"},
        {"sub": None},
        {"jti": None},
        {"iat": None},
        {"exp": None},
        {"iss": None},
        {"aud": None},
        {"use": None},
        {"sub": 42},
    ],
    ids=lambda change: ",".join(f"{k}={v}" for k, v in change.items()),
)
def test_a_token_with_a_wrong_or_missing_claim_is_unauthorized(
    config: JwtConfig, change: dict[str, object]
) -> None:
    token = jwt.encode(_payload(**change), SECRET, algorithm="HS256")
    with pytest.raises(Unauthorized):
        decode_token(config, token, "access")


def test_a_well_formed_token_from_the_helper_payload_passes(config: JwtConfig) -> None:
    """The control for the cases above: the unchanged payload decodes."""
    token = jwt.encode(_payload(), SECRET, algorithm="HS256")
    assert decode_token(config, token, "access").subject == "alice"


def test_a_token_signed_with_another_key_is_unauthorized(config: JwtConfig) -> None:
    token = jwt.encode(_payload(), b"o" * 64, algorithm="HS256")
    with pytest.raises(Unauthorized, match="invalid"):
        decode_token(config, token, "access")


def _b64(part: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()


def test_alg_none_and_other_algorithms_are_refused(config: JwtConfig) -> None:
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_payload())}."
    with pytest.raises(Unauthorized):
        decode_token(config, unsigned, "access")
    hs512 = jwt.encode(_payload(), SECRET, algorithm="HS512")
    with pytest.raises(Unauthorized):
        decode_token(config, hs512, "access")


def test_an_expiry_beyond_the_calendar_is_unauthorized_not_a_crash(config: JwtConfig) -> None:
    token = jwt.encode(_payload(exp=10**14), SECRET, algorithm="HS256")
    with pytest.raises(Unauthorized, match="invalid"):
        decode_token(config, token, "access")


def test_a_non_string_family_is_ignored(config: JwtConfig) -> None:
    token = jwt.encode(_payload(fam=7), SECRET, algorithm="HS256")
    assert decode_token(config, token, "access").family is None


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "e30.e30.e30"])
def test_garbage_is_unauthorized(config: JwtConfig, garbage: str) -> None:
    with pytest.raises(Unauthorized):
        decode_token(config, garbage, "access")


def test_new_secret_adopts_a_long_enough_earlier_key(tmp_path: Path) -> None:
    earlier = "e" * 40
    (tmp_path / "secret_key").write_text(earlier + "\n")
    assert new_secret(tmp_path) == earlier


def test_new_secret_makes_a_fresh_key_when_the_earlier_is_short_absent_or_unreadable(tmp_path: Path) -> None:
    fresh = new_secret(tmp_path)  # absent
    assert len(fresh) >= 64 and fresh != new_secret(tmp_path)
    (tmp_path / "secret_key").write_text("short")
    assert new_secret(tmp_path) != "short"
    (tmp_path / "secret_key").write_bytes(b"\xff" * 40)
    assert len(new_secret(tmp_path)) >= 64
