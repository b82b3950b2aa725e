"""images: each PDQ band indexed with the owner after it (owner-scoped lookups read only the
owner's rows; measured at a million rows, bench/perceptual_lookup.py)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 23:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BANDS = 16


def _recreate(columns: list[str], band: int) -> None:
    name = f"ix_images_pdq_{band}"
    where = sa.text(f"pdq_{band} IS NOT NULL")
    op.drop_index(name, table_name="images")
    op.create_index(name, "images", columns, sqlite_where=where, postgresql_where=where)


def upgrade() -> None:
    for band in range(BANDS):
        _recreate([f"pdq_{band}", "owner"], band)


def downgrade() -> None:
    for band in range(BANDS):
        _recreate([f"pdq_{band}"], band)
