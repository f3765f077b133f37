"""UWS jobs of several services: the job's service and its further results.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add ``service`` (existing jobs are TAP's) and ``more_results``."""
    op.add_column(
        "uws_job",
        sa.Column("service", sa.String(16), nullable=False, server_default="tap"),
    )
    op.add_column("uws_job", sa.Column("more_results", sa.JSON(), nullable=True))
    op.create_index("ix_uws_job_service", "uws_job", ["service"])


def downgrade() -> None:
    """Drop the columns again."""
    op.drop_index("ix_uws_job_service", table_name="uws_job")
    with op.batch_alter_table("uws_job") as batch:
        batch.drop_column("more_results")
        batch.drop_column("service")
