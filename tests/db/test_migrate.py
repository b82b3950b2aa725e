"""Alembic migrations on both back-ends: upgrade, idempotence, downgrade, concurrent start-ups."""

from __future__ import annotations

import sys
from typing import Any

import anyio
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from app.db import migrate
from app.db.engine import create_engine
from app.db.models import Base

TABLES = set(Base.metadata.tables)
HEAD = "0009"


async def _inspect(url: str, look: Any) -> Any:
    """`look(sync_connection)` on a short-lived connection to `url`."""
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(look)
    finally:
        await engine.dispose()


def _schema(connection: Connection) -> dict[str, Any]:
    inspector = inspect(connection)
    tables = set(inspector.get_table_names())
    return {
        "tables": tables,
        "indexes": {t: sorted(i["name"] for i in inspector.get_indexes(t)) for t in tables},
        "columns": {t: [c["name"] for c in inspector.get_columns(t)] for t in tables},
    }


def _version(connection: Connection) -> list[str]:
    if "alembic_version" not in inspect(connection).get_table_names():
        return []
    return [row[0] for row in connection.execute(text("SELECT version_num FROM alembic_version"))]


def _diff(connection: Connection) -> list[Any]:
    return compare_metadata(MigrationContext.configure(connection), Base.metadata)


async def _upgrade(url: str) -> None:
    await anyio.to_thread.run_sync(migrate.upgrade, url)


async def test_upgrade_from_empty_creates_every_table(empty_database_url: str) -> None:
    await _upgrade(empty_database_url)
    schema = await _inspect(empty_database_url, _schema)
    assert schema["tables"] == TABLES | {"alembic_version"}
    for name, table in Base.metadata.tables.items():
        assert schema["columns"][name] == [c.name for c in table.columns]
    assert "ix_request_history_stats" in schema["indexes"]["request_history"]
    assert "ix_request_history_created_at" in schema["indexes"]["request_history"]
    # The migrations build exactly what the models describe.
    assert await _inspect(empty_database_url, _diff) == []


async def test_upgrade_twice_is_a_no_op(empty_database_url: str) -> None:
    await _upgrade(empty_database_url)
    first = await _inspect(empty_database_url, _schema), await _inspect(empty_database_url, _version)
    await _upgrade(empty_database_url)
    second = await _inspect(empty_database_url, _schema), await _inspect(empty_database_url, _version)
    assert second == first
    assert first[1] == [HEAD]


async def test_downgrade_to_base_drops_every_table_then_upgrade_again(empty_database_url: str) -> None:
    await _upgrade(empty_database_url)
    await anyio.to_thread.run_sync(migrate.downgrade, empty_database_url, "base")
    schema = await _inspect(empty_database_url, _schema)
    assert schema["tables"] <= {"alembic_version"}
    assert await _inspect(empty_database_url, _version) == []
    await _upgrade(empty_database_url)
    assert (await _inspect(empty_database_url, _schema))["tables"] == TABLES | {"alembic_version"}
    assert await _inspect(empty_database_url, _version) == [HEAD]


async def test_concurrent_upgrades_in_two_threads_both_succeed(
    empty_database_url: str,
) -> None:
    """Two start-ups at once in one process: the lock makes the second a no-op."""
    errors: list[BaseException] = []

    async def upgrade() -> None:
        try:
            await _upgrade(empty_database_url)
        except BaseException as error:  # noqa: BLE001 - collected, asserted below
            errors.append(error)

    async with anyio.create_task_group() as group:
        group.start_soon(upgrade)
        group.start_soon(upgrade)
    assert errors == []
    assert (await _inspect(empty_database_url, _schema))["tables"] == TABLES | {"alembic_version"}
    assert await _inspect(empty_database_url, _version) == [HEAD]


async def test_concurrent_upgrades_in_two_processes_both_succeed(empty_database_url: str) -> None:
    """Two workers starting at once on one fresh database: both exit 0, the schema is at head."""
    code = "import sys; from app.db.migrate import upgrade; upgrade(sys.argv[1])"
    results: list[Any] = []

    async def upgrade() -> None:
        results.append(await anyio.run_process([sys.executable, "-c", code, empty_database_url], check=False))

    async with anyio.create_task_group() as group:
        group.start_soon(upgrade)
        group.start_soon(upgrade)
    assert [(r.returncode, r.stderr.decode()[-2000:]) for r in results] == [(0, "")] * 2
    assert (await _inspect(empty_database_url, _schema))["tables"] == TABLES | {"alembic_version"}
    assert await _inspect(empty_database_url, _version) == [HEAD]


async def test_downgrade_one_step_keeps_the_ledger_then_upgrade_again(empty_database_url: str) -> None:
    """0002 -> 0001 drops the shared-record tables and the subject column, keeping ledger rows."""
    await _upgrade(empty_database_url)
    await anyio.to_thread.run_sync(migrate.downgrade, empty_database_url, "0001")
    schema = await _inspect(empty_database_url, _schema)
    assert "idempotency_keys" not in schema["tables"] and "app_secrets" not in schema["tables"]
    assert "subject_key" not in schema["columns"]["credit_ledger"]
    assert await _inspect(empty_database_url, _version) == ["0001"]
    await _upgrade(empty_database_url)
    assert await _inspect(empty_database_url, _diff) == []


async def test_downgrade_0003_drops_contour_jobs_then_upgrade_again(empty_database_url: str) -> None:
    """0003 -> 0002 drops the scale-out contour job records, and upgrading restores them."""
    await _upgrade(empty_database_url)
    assert "contour_jobs" in (await _inspect(empty_database_url, _schema))["tables"]
    await anyio.to_thread.run_sync(migrate.downgrade, empty_database_url, "0002")
    assert "contour_jobs" not in (await _inspect(empty_database_url, _schema))["tables"]
    assert await _inspect(empty_database_url, _version) == ["0002"]
    await _upgrade(empty_database_url)
    assert await _inspect(empty_database_url, _diff) == []


async def test_downgrade_0004_drops_the_status_index_then_upgrade_again(empty_database_url: str) -> None:
    """0004 -> 0003 drops the contour job status index (JOB_MAX_PENDING, retention), and back."""
    await _upgrade(empty_database_url)
    index = "ix_contour_jobs_status_updated_at"
    assert index in (await _inspect(empty_database_url, _schema))["indexes"]["contour_jobs"]
    await anyio.to_thread.run_sync(migrate.downgrade, empty_database_url, "0003")
    assert index not in (await _inspect(empty_database_url, _schema))["indexes"]["contour_jobs"]
    assert await _inspect(empty_database_url, _version) == ["0003"]
    await _upgrade(empty_database_url)
    assert await _inspect(empty_database_url, _diff) == []


async def test_downgrade_0006_drops_the_webhook_tables_then_upgrade_again(empty_database_url: str) -> None:
    """0006 -> 0005 drops webhook secrets and deliveries, and upgrading restores them."""
    await _upgrade(empty_database_url)
    tables = {"webhook_secrets", "webhook_deliveries"}
    assert tables <= (await _inspect(empty_database_url, _schema))["tables"]
    await anyio.to_thread.run_sync(migrate.downgrade, empty_database_url, "0005")
    assert not tables & (await _inspect(empty_database_url, _schema))["tables"]
    assert await _inspect(empty_database_url, _version) == ["0005"]
    await _upgrade(empty_database_url)
    assert await _inspect(empty_database_url, _diff) == []
