"""Failed logins, limited so that lockouts lock out attackers, not the account's owner.

OWASP's device cookies: a login that brings a valid device cookie for its username (the
device signed in as that user before) is counted against that device alone, so the owner
keeps signing in while someone guesses the password from elsewhere. Every other login is an
"untrusted client" and counts against the username's untrusted allowance and its client
address's. Each counter allows `free` attempts in the window at full speed, then each
attempt first waits (0.25 s doubling, up to `max_delay`); a full counter refuses with 429
and Retry-After until its oldest attempt leaves the window (a device's counter locks that
device only, as OWASP asks).

Attempts are reserved before the password is checked (`app.services.accounts.login_attempts`): at
most the limit of passwords is ever checked, however many logins arrive at once. A correct
password releases its reservation (and clears a trusted device's failures); a wrong one
leaves it counted. A correct password from an untrusted client does not clear the
username's failures: an attacker's count survives the owner's next login.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from dataclasses import dataclass

from app.core import metrics
from app.core.device_cookies import Device
from app.core.errors import TooManyRequests
from app.services.accounts.login_attempts import AttemptStore, Counter, Reservation

LOCKED_OUT = "Too many failed logins; try again later"


@dataclass(frozen=True)
class LoginLimits:
    """How many failures each kind of counter allows in the window, and how they slow down."""

    free: int  # attempts at full speed before each further one waits
    window: float  # seconds an attempt is remembered
    max_delay: float  # the longest wait before a password check
    untrusted: int  # per username, logins without its device cookie
    device: int  # per device cookie
    address: int  # per client address (untrusted logins)


@dataclass(frozen=True)
class Attempt:
    """A login attempt that may check its password."""

    reservation: Reservation
    device: Device | None


class LoginThrottle:
    """Reserves, delays and settles login attempts against their counters."""

    def __init__(self, store: AttemptStore, limits: LoginLimits) -> None:
        self.store = store
        self.limits = limits

    def counters(self, username_key: str, address: str | None, device: Device | None) -> list[Counter]:
        """The counters a login is charged to: its device's, or its username's and address's."""
        if device is not None:
            return [Counter(f"device:{device.nonce}", self.limits.device)]
        digest = hashlib.sha256(username_key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        counters = [Counter(f"user:{digest}", self.limits.untrusted)]
        if address:
            counters.append(Counter(f"addr:{address}", self.limits.address))
        return counters

    def delay(self, previous: int) -> float:
        """Seconds to wait before checking a password, after `previous` recent attempts."""
        if previous < self.limits.free:
            return 0.0
        return min(self.limits.max_delay, 0.25 * 2 ** min(previous - self.limits.free, 32))

    async def begin(self, username_key: str, address: str | None, device: Device | None) -> Attempt:
        """Reserve an attempt and wait its delay; TooManyRequests (429) while locked out."""
        counters = self.counters(username_key, address, device)
        reservation = await self.store.reserve(counters, self.limits.window)
        if not reservation.granted:
            metrics.LOGIN_REFUSED.labels("locked_out").inc()
            retry = max(1, math.ceil(reservation.retry_after))
            raise TooManyRequests(LOCKED_OUT, headers={"Retry-After": str(retry)})
        attempt = Attempt(reservation, device)
        wait = self.delay(reservation.previous)
        if wait:
            try:
                await asyncio.sleep(wait)
            except asyncio.CancelledError:  # the client left: no password was checked
                await self.release(attempt)
                raise
        return attempt

    async def succeeded(self, attempt: Attempt) -> None:
        """The password was right: the attempt is not a failure; a trusted device starts afresh."""
        clear = (f"device:{attempt.device.nonce}",) if attempt.device is not None else ()
        await self.release(attempt, clear)

    async def release(self, attempt: Attempt, clear: tuple[str, ...] = ()) -> None:
        """Forget the attempt (its password was not checked, or was right)."""
        store = attempt.reservation.store
        if store is not None:
            await store.release(attempt.reservation, clear)
