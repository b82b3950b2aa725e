"""Failed logins, slowed per username and per client address (in this worker's memory).

After `free` failures of a key within `window` seconds, each further attempt first waits
(0.25 s doubling, up to `max_delay`); past four times `free` failures it is refused with
429 and Retry-After until the oldest failure leaves the window. A success clears the
username's failures (not the address's). Unknown and known usernames count alike.
"""

from __future__ import annotations

import math
import time
from collections import deque

from app.core.errors import TooManyRequests


class LoginThrottle:
    def __init__(self, free: int, window: float, max_delay: float, max_keys: int = 100_000) -> None:
        self.free = free
        self.window = window
        self.max_delay = max_delay
        self.max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.get(key)
        if failures is None:
            return deque()
        while failures and now - failures[0] > self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
        return failures

    def delay(self, keys: list[str]) -> float:
        """Seconds to wait before checking a password; TooManyRequests when locked out."""
        now = time.monotonic()
        worst = max((len(self._recent(key, now)) for key in keys), default=0)
        if worst >= 4 * self.free:
            oldest = min(self._recent(key, now)[0] for key in keys if self._recent(key, now))
            retry = max(1, math.ceil(self.window - (now - oldest)))
            raise TooManyRequests(
                "Too many failed logins; try again later", headers={"Retry-After": str(retry)}
            )
        if worst < self.free:
            return 0.0
        return min(self.max_delay, 0.25 * 2 ** (worst - self.free))

    def failed(self, keys: list[str]) -> None:
        now = time.monotonic()
        if len(self._failures) > self.max_keys:
            for key in list(self._failures):
                self._recent(key, now)
        for key in keys:
            self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)
