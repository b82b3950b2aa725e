"""Log formats: the seeds' text lines by default, JSON objects on request."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import serve
from tests.factories import photo_jpeg

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d - [\w.]+ - (INFO|WARNING|ERROR|DEBUG) - .+$")


async def run_flow(make_settings, **settings: object) -> None:
    async with serve(make_settings(**settings)) as c:
        up = await c.post(
            "/upload",
            files={"file": ("a\r\nb.jpg", photo_jpeg(), "image/jpeg")},
            headers={"X-Request-ID": "req-1"},
        )
        await c.post("/analyze", json={"image_id": up.json()["image_id"]})


async def test_text_format(make_settings, capsys: pytest.CaptureFixture[str]) -> None:
    await run_flow(make_settings)
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(TEXT_LINE.match(line) for line in lines), lines
    assert any("upload image_id=" in line and "type=image/jpeg" in line for line in lines)
    assert any("POST /upload 201" in line and "request_id=req-1" in line for line in lines)
    assert any("analyzer=skin computed" in line for line in lines)


async def test_json_format(make_settings, capsys: pytest.CaptureFixture[str]) -> None:
    await run_flow(make_settings, log_format="json")
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {"time", "logger", "level", "message"} <= set(records[0])
    upload = next(r for r in records if r["message"].startswith("upload image_id="))
    assert upload["request_id"] == "req-1"
