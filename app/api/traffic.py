"""Traffic at the door: connection caps (load shedding), request metrics, memory after bursts.

`Admission` (a step of `app.api.pipeline`) refuses at once (503 problem+json, Retry-After) what is over
`MAX_CONCURRENT_REQUESTS` in all or `MAX_CONCURRENT_PER_ADDRESS` from one client address,
instead of queueing without bound; health probes and `/metrics` always pass. The last
`ADMISSION_RESERVE_FRACTION` of the capacity is a reserve: while it is being handed out, an
address is admitted only if it holds fewer requests than an equal share of the rest among
the addresses in flight, so that a few addresses (slow clients, an attack from a handful of
hosts) cannot take every slot from the others. Saturation shows in `/metrics`
(`http_requests_in_flight` / `http_requests_capacity`, `http_admission_reserve_in_use`,
`http_requests_shed_total{reason}`). It counts the requests in flight (the pipeline records
every request's duration by route template, method and status). At the first idle moment
(nothing in flight), at most every TRIM_EVERY_SECONDS, it
asks the C allocator to give freed memory back to the system (`malloc_trim`): the process
returns near its starting size after a burst, and after one large analysis too. While the
process stays idle it trims again every TRIM_EVERY_SECONDS, IDLE_TRIMS times: work that
outlives the last request (analyses whose clients gave up, history flushes, deletes) frees
its memory after that first trim, and no request would come to trigger another.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import time

from starlette.types import ASGIApp

from app.api.problems import error_response
from app.core import metrics
from app.core.errors import Overloaded

logger = logging.getLogger("app.traffic")

EXEMPT = frozenset({"/health", "/healthz", "/readyz", "/metrics"})
TRIM_EVERY_SECONDS = 5.0
IDLE_TRIMS = 6  # trims while idle after the last request: 30 s with the period above


def _malloc_trim() -> None:
    name = ctypes.util.find_library("c")
    if name:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass


class Admission:
    """Connection caps, requests in flight, memory trimming after bursts."""

    def __init__(self, *, max_concurrent: int, max_per_address: int, reserve_fraction: float = 0.0) -> None:
        self.max_concurrent = max_concurrent
        self.max_per_address = max_per_address
        # In flight from which on the reserve is being handed out (max_concurrent: no reserve)
        self.reserve_from = max_concurrent - int(max_concurrent * reserve_fraction)
        self.in_reserve = False
        metrics.REQUEST_CAPACITY.set(max_concurrent)
        self.in_flight = 0
        self.by_address: dict[str, int] = {}
        self.trimmed_at = 0.0
        self.trim_timer: asyncio.TimerHandle | None = None
        self.trims = 0
        self.idle_trims = 0  # trims since the last request left

    def admit(self, path: str, address: str) -> ASGIApp | None:
        """Count a request in (the caller must `leave` it), or the 503 answer that refuses it."""
        if path not in EXEMPT:
            reason = self._refusal(address)
            if reason is not None:
                metrics.SHED.labels(reason).inc()
                return error_response(Overloaded())
        self.in_flight += 1
        self.by_address[address] = self.by_address.get(address, 0) + 1
        metrics.IN_FLIGHT.inc()
        if self.in_flight >= self.reserve_from and not self.in_reserve:
            self.in_reserve = True
            metrics.ADMISSION_RESERVE_IN_USE.set(1)
        return None

    def _refusal(self, address: str) -> str | None:
        if self.in_flight >= self.max_concurrent:
            return "max_concurrent"
        held = self.by_address.get(address, 0)
        if held >= self.max_per_address:
            return "max_per_address"
        if self.in_flight >= self.reserve_from:
            addresses = len(self.by_address) + (held == 0)
            if held >= max(1, self.reserve_from // addresses):
                return "reserve"
        return None

    def leave(self, address: str) -> None:
        """An admitted request is done."""
        metrics.IN_FLIGHT.dec()
        self.in_flight -= 1
        if self.in_reserve and self.in_flight < self.reserve_from:
            self.in_reserve = False
            metrics.ADMISSION_RESERVE_IN_USE.set(0)
        left = self.by_address[address] - 1
        if left:
            self.by_address[address] = left
        else:
            del self.by_address[address]
        if self.in_flight == 0:
            self.idle_trims = 0
            if self.trim_timer is None:
                due = max(0.0, self.trimmed_at + TRIM_EVERY_SECONDS - time.monotonic())
                self.trim_timer = asyncio.get_running_loop().call_later(due, self._trim)

    def _trim(self) -> None:
        self.trim_timer = None
        if self.in_flight:
            return  # busy again: the next idle moment trims
        loop = asyncio.get_running_loop()
        self.trimmed_at = time.monotonic()
        self.trims += 1
        self.idle_trims += 1
        loop.run_in_executor(None, _malloc_trim)
        if self.idle_trims < IDLE_TRIMS:  # still idle: again later, for what work still frees
            self.trim_timer = loop.call_later(TRIM_EVERY_SECONDS, self._trim)
