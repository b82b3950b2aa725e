"""Login settings (app.core.login_settings): derived limits, and every one documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.config import Settings
from app.core.login_settings import LoginSettings

ROOT = Path(__file__).resolve().parents[2]


def test_limits_default_to_four_times_the_free_attempts_and_follow_each_other() -> None:
    settings = Settings(_env_file=None, login_failures_before_delay=3)
    assert (settings.login_untrusted_limit, settings.login_device_limit, settings.login_address_limit) == (
        12,
        12,
        12,
    )
    settings = Settings(_env_file=None, login_max_failures=7, login_address_max_failures=50)
    assert (settings.login_untrusted_limit, settings.login_device_limit, settings.login_address_limit) == (
        7,
        7,
        50,
    )


@pytest.mark.parametrize("document", ["README.md", ".env.example"])
def test_every_login_setting_is_documented(document: str) -> None:
    text = (ROOT / document).read_text()
    names = [name.upper() for name in LoginSettings.model_fields] + ["REDIS_OUTAGE_POLICY"]
    assert [name for name in names if name not in text] == []


def test_a_device_cookie_name_must_be_a_plain_token() -> None:
    with pytest.raises(ValueError):
        Settings(_env_file=None, login_device_cookie_name="a=b; Path=/")
