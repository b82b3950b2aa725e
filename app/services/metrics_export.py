"""The Prometheus exposition behind `/metrics`: on or off (METRICS_ENABLED), and the bearer token
it may require (METRICS_TOKEN)."""

from __future__ import annotations

from pydantic import SecretStr

from app.core import metrics
from app.core.errors import NotFound, Unauthorized
from app.core.security import secrets_equal
from app.core.threads import ThreadPool


class MetricsExport:
    """Every worker's metrics, for a caller that may see them."""

    def __init__(self, enabled: bool, token: SecretStr | None, pool: ThreadPool) -> None:
        self.enabled = enabled
        self.token = token
        self.pool = pool

    async def exposition(self, bearer: str | None) -> bytes:
        """The metrics in Prometheus text format (read from disk in the pool); NotFound while
        disabled, Unauthorized unless `bearer` is the token (when one is set)."""
        if not self.enabled:
            raise NotFound("Metrics are disabled")
        if self.token is not None and (
            bearer is None or not secrets_equal(bearer, self.token.get_secret_value())
        ):
            raise Unauthorized("The metrics token is required", headers={"WWW-Authenticate": "Bearer"})
        return await self.pool.run(metrics.exposition)
