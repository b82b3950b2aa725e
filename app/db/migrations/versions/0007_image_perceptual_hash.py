"""images: PDQ perceptual hash and its 16 indexed bands (near-duplicate reuse, issue 18)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BANDS = 16


def upgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("perceptual_hash", sa.String(length=64), nullable=True))
        for band in range(BANDS):
            batch_op.add_column(sa.Column(f"pdq_{band}", sa.Integer(), nullable=True))
    for band in range(BANDS):
        where = sa.text(f"pdq_{band} IS NOT NULL")
        op.create_index(
            f"ix_images_pdq_{band}", "images", [f"pdq_{band}"], sqlite_where=where, postgresql_where=where
        )


def downgrade() -> None:
    for band in range(BANDS):
        op.drop_index(f"ix_images_pdq_{band}", table_name="images")
    with op.batch_alter_table("images", schema=None) as batch_op:
        for band in reversed(range(BANDS)):
            batch_op.drop_column(f"pdq_{band}")
        batch_op.drop_column("perceptual_hash")
