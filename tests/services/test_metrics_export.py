"""app.services.metrics_export: the exposition is served while enabled, to the token's bearer
only when a token is set; disabled it is NotFound."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from app.core import metrics
from app.core.errors import NotFound, Unauthorized
from app.core.threads import ThreadPool
from app.services.metrics_export import MetricsExport


@pytest.fixture
def pool() -> Iterator[ThreadPool]:
    threads = ThreadPool("metrics-test", 1)
    yield threads
    threads.shutdown()


async def test_open_metrics_are_the_exposition(pool: ThreadPool) -> None:
    metrics.LOGIN_FAILURES.inc(0)
    text = await MetricsExport(True, None, pool).exposition(None)
    assert b"login_failures_total" in text


async def test_a_token_is_required_when_set(pool: ThreadPool) -> None:
    export = MetricsExport(True, SecretStr("s3cret-token"), pool)
    for bearer in (None, "wrong", "s3cret-toke"):
        with pytest.raises(Unauthorized) as refused:
            await export.exposition(bearer)
        assert refused.value.headers == {"WWW-Authenticate": "Bearer"}
    assert b"# HELP" in await export.exposition("s3cret-token")


async def test_disabled_metrics_are_not_found(pool: ThreadPool) -> None:
    with pytest.raises(NotFound):
        await MetricsExport(False, None, pool).exposition(None)
