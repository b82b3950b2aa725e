"""Run as the acceptance suite runs it (a server process with DATA_DIR set): a refused request
changes no file name under the data dir (metrics, database and key files exist from start-up)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import files_under
from tests.processes import Server, start_server

pytestmark = pytest.mark.slow


def test_refused_requests_leave_the_data_dir_as_it_was(servers: list[Server], tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = start_server(servers, data_dir, "one", {"ANALYZERS": ""})
    before = files_under(data_dir)
    assert any(name.startswith("metrics/") for name in before)
    with httpx.Client(base_url=server.base_url, timeout=10) as c:
        assert (
            c.post("/upload", files={"file": ("x.jpg", b"\xff\xd8\xff garbage", "image/jpeg")}).status_code
            == 400
        )
        assert (
            c.post("/analyze", content=b"{", headers={"Content-Type": "application/json"}).status_code == 400
        )
        assert c.get("/api/v1/images/3fa85f64-5717-4562-b3fc-2c963f66afa6").status_code == 404
        assert c.put("/health").status_code == 405
    assert files_under(data_dir) == before
