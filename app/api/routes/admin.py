"""Admin routes: credit refills (seed 000), request history and statistics (seed 003)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import Depends, Query, Request
from starlette.responses import Response

from app.api.deps import AdminPrincipal, HistoryAdmin, HistoryDep, OptionalPrincipal, RefillsDep
from app.api.routing import DeclaredRouter, Policy
from app.core.errors import ValidationFailed
from app.db.history import HistoryFilter
from app.schemas.auth import RefillRead, RefillRequest
from app.schemas.history import HistoryItem, HistoryPage, StatsRead
from app.schemas.problems import UNAUTHORIZED, problem_docs

# `default` per client address: these routes authenticate their own way (ADMIN_TOKEN too)
router = DeclaredRouter(Policy(rate_limit="default", per_caller=False), tags=["admin"])

ADMIN_ONLY = problem_docs(UNAUTHORIZED, (403, "forbidden", "This needs an admin"))


async def history_filter(
    request_type: Annotated[Literal["image", "json", "url"] | None, Query()] = None,
    status_code: Annotated[int | None, Query(ge=100, le=599)] = None,
    since: Annotated[datetime | None, Query(description="ISO 8601 with an offset; inclusive")] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601 with an offset; exclusive")] = None,
) -> HistoryFilter:
    """The filters shared by /history and /stats."""
    return HistoryFilter(
        request_type=request_type,
        status_code=status_code,
        since=_utc("since", since),
        until=_utc("until", until),
    )


def _utc(name: str, value: datetime | None) -> datetime | None:
    """`value` in UTC; ValidationFailed without an offset or outside years 1-9999 in UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValidationFailed(f"Invalid request: {name}: give a time zone offset (e.g. Z)")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValidationFailed(f"Invalid request: {name}: out of range") from None


Filter = Annotated[HistoryFilter, Depends(history_filter)]


@router.post(
    "/v1/refill",
    response_model=RefillRead,
    summary="Add credits to a user (seed 000)",
    responses=problem_docs(
        UNAUTHORIZED, (403, "forbidden", "This needs an admin"), (404, "user_not_found", "User not found")
    ),
)
async def refill(
    request: Request, body: RefillRequest, refills: RefillsDep, caller: OptionalPrincipal
) -> RefillRead:
    """An admin's token, or `admin_password` checked against ADMIN_PW_HASH (as seed 000 does),
    adds `amount` (default TOKEN_REFILL_AMOUNT) credits."""
    done = await refills.refill(
        caller,
        body.username,
        body.amount,
        admin_password=body.admin_password,
        address=request.client.host if request.client else None,
    )
    return RefillRead(username=done.username, credits=done.balance, added=done.added)


@router.get(
    "/history", response_model=HistoryPage, summary="Request history (seed 003)", responses=ADMIN_ONLY
)
async def read_history(
    _: AdminPrincipal,
    history: HistoryDep,
    filter: Filter,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**12)] = 0,
) -> HistoryPage:
    """Every analysis request, newest first: `{"total", "items"}`."""
    total, rows = await history.page(filter, limit, offset)
    return HistoryPage(
        total=total, items=[HistoryItem.model_validate(row, from_attributes=True) for row in rows]
    )


@router.delete(
    "/history",
    status_code=204,
    response_class=Response,
    summary="Delete history (seed 003)",
    responses=ADMIN_ONLY,
)
async def delete_history(_: HistoryAdmin, history: HistoryDep, filter: Filter) -> Response:
    """Delete the (matching) history; an admin's token or ADMIN_TOKEN as the bearer."""
    await history.delete(filter)
    return Response(status_code=204)


@router.get("/stats", response_model=StatsRead, summary="Request statistics (seed 003)", responses=ADMIN_ONLY)
async def read_stats(_: AdminPrincipal, history: HistoryDep, filter: Filter) -> StatsRead:
    """Count, mean, median, 95th and 99th percentile processing time (seconds; NumPy's linear
    interpolation), average input size and image size of the matching requests."""
    return StatsRead(**asdict(await history.stats(filter)))
