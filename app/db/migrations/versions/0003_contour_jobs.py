"""contour job records shared by every replica (scale-out mode)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 18:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "contour_jobs",
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("content_key", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("hold_id", sa.String(length=64), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_detail", sa.Text(), nullable=True),
        sa.Column("worker", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_contour_jobs")),
    )
    with op.batch_alter_table("contour_jobs", schema=None) as batch_op:
        batch_op.create_index("ix_contour_jobs_content_key_status", ["content_key", "status"], unique=False)
        batch_op.create_index("ix_contour_jobs_owner", ["owner"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("contour_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_contour_jobs_owner")
        batch_op.drop_index("ix_contour_jobs_content_key_status")
    op.drop_table("contour_jobs")
