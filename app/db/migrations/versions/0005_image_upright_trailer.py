"""images: upright (displayed) size and the declared trailer cut off at upload

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("upright_width", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("upright_height", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("trailer", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_column("trailer")
        batch_op.drop_column("upright_height")
        batch_op.drop_column("upright_width")
