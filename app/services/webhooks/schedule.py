"""When a failed delivery is tried again: exponential backoff with jitter, within a window."""

from __future__ import annotations

import random
from datetime import datetime, timedelta


def next_attempt(
    attempts: int,
    *,
    created_at: datetime,
    now: datetime,
    base: float,
    cap: float,
    retry_for: float,
    rng: random.Random | None = None,
) -> datetime | None:
    """The time of the next try after `attempts` failed ones, or None once it would fall later
    than `retry_for` seconds after `created_at` (give up). The wait is min(cap, base x 2^(n-1)),
    its second half drawn at random ("equal jitter"), so that receivers that come back are not
    hit by every sender at once, and no wait is shorter than half the nominal one."""
    exponent = min(max(attempts, 1) - 1, 62)
    nominal = min(cap, base * 2.0**exponent)
    wait = nominal / 2 + (rng or random).uniform(0, nominal / 2)
    when = now + timedelta(seconds=wait)
    if when > created_at + timedelta(seconds=retry_for):
        return None
    return when
