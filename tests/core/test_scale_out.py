"""Scale-out mode (`STORAGE_URL=s3://...`) refuses to start without PostgreSQL and Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.core.config import Settings
from app.core.scale_out import ScaleOutMisconfigured, ScaleOutSettings, check_scale_out, scale_out_problems
from app.main import create_app
from tests.processes import REPO_ROOT

PG = "postgresql+asyncpg://u@db.internal/service"
REDIS = "redis://redis.internal:6379/0"


def settings(tmp_path: Path, **values: Any) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, environment="test", api_keys=[], **values)


def section(tmp_path: Path, **values: Any) -> ScaleOutSettings:
    return ScaleOutSettings.from_settings(settings(tmp_path, **values))


def test_the_embedded_default_needs_no_shared_engine(tmp_path: Path) -> None:
    assert scale_out_problems(section(tmp_path)) == []
    check_scale_out(section(tmp_path))


def test_s3_storage_with_postgresql_and_redis_starts(tmp_path: Path) -> None:
    check_scale_out(section(tmp_path, storage_url="s3://b/p", database_url=PG, redis_url=REDIS))


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"redis_url": REDIS}, ["DATABASE_URL"]),
        ({"redis_url": REDIS, "database_url": "sqlite+aiosqlite:////shared/service.db"}, ["DATABASE_URL"]),
        ({"database_url": PG}, ["REDIS_URL"]),
        ({}, ["DATABASE_URL", "REDIS_URL"]),
    ],
)
def test_s3_storage_without_a_shared_engine_is_refused(
    tmp_path: Path, values: dict[str, Any], named: list[str]
) -> None:
    with pytest.raises(ScaleOutMisconfigured) as raised:
        check_scale_out(section(tmp_path, storage_url="s3://b/p", **values))
    message = str(raised.value)
    assert "STORAGE_URL" in message
    assert [name for name in ("DATABASE_URL", "REDIS_URL") if name in message] == named


def test_the_check_can_be_lifted_for_a_single_host(tmp_path: Path) -> None:
    check_scale_out(section(tmp_path, storage_url="s3://b/p", scale_out_checks=False))


async def test_the_app_does_not_start(tmp_path: Path) -> None:
    app = create_app(settings(tmp_path, storage_url="s3://b/p", database_url=PG))
    with pytest.raises(ScaleOutMisconfigured, match="REDIS_URL"):
        async with app.router.lifespan_context(app):
            pass


def test_a_server_process_exits_with_the_reason(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DATA_DIR=str(tmp_path), STORAGE_URL="s3://bucket/prefix", ENVIRONMENT="test", API_KEYS="")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    done = subprocess.run(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", "0"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3  # uvicorn's start-up failure
    assert "DATABASE_URL must be PostgreSQL" in done.stderr and "REDIS_URL must be set" in done.stderr
