"""Fixtures of the scale-out tests: the live S3 server (shared with tests/storage). When CI
provides the servers (`CI_REQUIRE_POSTGRES=1`, `CI_REQUIRE_S3=1`, or `TEST_NGINX_BIN` set) a
test here that skips, for whatever reason, is reported as a failure."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.scaleout.cluster import ci_provides_servers
from tests.storage.conftest import s3_server  # noqa: F401


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome: Any = yield
    report = outcome.get_result()
    if report.skipped and ci_provides_servers() and "tests/scaleout/" in item.nodeid:
        report.outcome = "failed"
        report.longrepr = f"skipped while CI provides the servers (a failure here): {report.longrepr}"
