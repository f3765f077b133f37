"""UWS jobs of the TAP service.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

NAME = sa.String(255)
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the job table."""
    op.create_table(
        "uws_job",
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("run_id", NAME, nullable=True),
        sa.Column("owner", NAME, nullable=True),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("creation_time", TIMESTAMP, nullable=False),
        sa.Column("start_time", TIMESTAMP, nullable=True),
        sa.Column("end_time", TIMESTAMP, nullable=True),
        sa.Column("execution_duration", sa.Integer(), nullable=False),
        sa.Column("destruction", TIMESTAMP, nullable=False),
        sa.Column("error_type", sa.String(16), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("result_path", sa.Text(), nullable=True),
        sa.Column("result_mime", NAME, nullable=True),
        sa.Column("result_size", sa.BigInteger(), nullable=True),
        sa.Column("result_rows", sa.BigInteger(), nullable=True),
        sa.Column("result_overflow", sa.Boolean(), nullable=True),
        sa.PrimaryKeyConstraint("job_id", name="pk_uws_job"),
    )
    op.create_index("ix_uws_job_phase", "uws_job", ["phase"])
    op.create_index("ix_uws_job_creation_time", "uws_job", ["creation_time"])
    op.create_index("ix_uws_job_destruction", "uws_job", ["destruction"])


def downgrade() -> None:
    """Drop the job table."""
    op.drop_table("uws_job")
