"""contour jobs: perceptual reuse (the hashes of detection jobs' images, a job's `reused_from`)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 23:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BANDS = 16


def upgrade() -> None:
    op.create_table(
        "contour_job_hashes",
        sa.Column("content_key", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("variant", sa.String(length=128), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("perceptual_hash", sa.String(length=64), nullable=False),
        sa.Column("created_ts", sa.Float(), nullable=False),
        *(sa.Column(f"pdq_{band}", sa.Integer(), nullable=False) for band in range(BANDS)),
        sa.PrimaryKeyConstraint("content_key", "owner", name=op.f("pk_contour_job_hashes")),
    )
    op.create_index("ix_contour_job_hashes_owner", "contour_job_hashes", ["owner"])
    for band in range(BANDS):
        op.create_index(f"ix_contour_job_hashes_pdq_{band}", "contour_job_hashes", [f"pdq_{band}", "owner"])
    with op.batch_alter_table("contour_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reused_from", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("reused_distance", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("contour_jobs", schema=None) as batch_op:
        batch_op.drop_column("reused_distance")
        batch_op.drop_column("reused_from")
    for band in range(BANDS):
        op.drop_index(f"ix_contour_job_hashes_pdq_{band}", table_name="contour_job_hashes")
    op.drop_index("ix_contour_job_hashes_owner", table_name="contour_job_hashes")
    op.drop_table("contour_job_hashes")
