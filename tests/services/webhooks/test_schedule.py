"""The retry schedule: exponential backoff, jitter within bounds, give up after the window."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from app.core.config import Settings
from app.services.webhooks.schedule import next_attempt

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_waits_double_with_jitter_between_half_and_all_of_the_nominal_wait() -> None:
    rng = random.Random(7)
    for attempts, nominal in ((1, 5), (2, 10), (3, 20), (4, 40), (12, 3600), (200, 3600)):
        waits = [
            (next_attempt(attempts, created_at=T0, now=T0, base=5, cap=3600, retry_for=10**9, rng=rng) - T0)
            for _ in range(200)
        ]
        seconds = [w.total_seconds() for w in waits if w is not None]
        assert nominal / 2 <= min(seconds) and max(seconds) <= nominal
        assert max(seconds) - min(seconds) > nominal / 4  # jittered, not fixed


def test_gives_up_after_the_window_and_the_defaults_retry_for_more_than_a_day() -> None:
    defaults = Settings(_env_file=None)
    rng = random.Random(1)
    now, attempts = T0, 0
    while True:
        attempts += 1
        when = next_attempt(
            attempts,
            created_at=T0,
            now=now,
            base=defaults.webhook_retry_base_seconds,
            cap=defaults.webhook_retry_max_delay_seconds,
            retry_for=defaults.webhook_retry_for_seconds,
            rng=rng,
        )
        if when is None:
            break
        now = when
    assert now - T0 >= timedelta(days=1)
    assert now - T0 <= timedelta(seconds=defaults.webhook_retry_for_seconds)
    assert 20 < attempts < 100
