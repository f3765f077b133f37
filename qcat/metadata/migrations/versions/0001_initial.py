"""Catalog tables and columns, versions, partitions, files, ingest transactions.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

NAME = sa.String(255)
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the first schema."""
    op.create_table(
        "catalog_table",
        sa.Column("name", NAME, nullable=False),
        sa.Column("name_folded", NAME, nullable=False),
        sa.Column("schema_name", NAME, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_catalog_table"),
        sa.UniqueConstraint("name_folded", name="uq_catalog_table_name_folded"),
    )
    op.create_table(
        "catalog_column",
        sa.Column("table_name", NAME, nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("datatype", sa.String(32), nullable=False),
        sa.Column("nullable", sa.Boolean(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("unit", NAME, nullable=True),
        sa.Column("ucd", NAME, nullable=True),
        sa.Column("length", sa.Integer(), nullable=True),
        sa.Column("principal", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("table_name", "ordinal", name="pk_catalog_column"),
        sa.UniqueConstraint("table_name", "name", name="uq_catalog_column_table_name_name"),
        sa.ForeignKeyConstraint(
            ["table_name"],
            ["catalog_table.name"],
            name="fk_catalog_column_table_name_catalog_table",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "ingest",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("table_name", NAME, nullable=False),
        sa.Column("operation", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("staging_path", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_ingest"),
    )
    op.create_index("ix_ingest_table_name", "ingest", ["table_name"])
    op.create_index("ix_ingest_status", "ingest", ["status"])
    op.create_table(
        "ingest_input",
        sa.Column("ingest_id", sa.Integer(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("ingest_id", "ordinal", name="pk_ingest_input"),
        sa.ForeignKeyConstraint(
            ["ingest_id"],
            ["ingest.id"],
            name="fk_ingest_input_ingest_id_ingest",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "table_version",
        sa.Column("table_name", NAME, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("ingest_id", sa.Integer(), nullable=False),
        sa.Column("base_version", sa.Integer(), nullable=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("num_rows", sa.BigInteger(), nullable=False),
        sa.Column("num_partitions", sa.Integer(), nullable=False),
        sa.Column("margin_path", sa.Text(), nullable=True),
        sa.Column("margin_arcsec", sa.Float(), nullable=True),
        sa.Column("index_path", sa.Text(), nullable=True),
        sa.Column("attached", sa.Boolean(), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("table_name", "version", name="pk_table_version"),
        sa.UniqueConstraint("ingest_id", name="uq_table_version_ingest_id"),
        sa.ForeignKeyConstraint(
            ["table_name"],
            ["catalog_table.name"],
            name="fk_table_version_table_name_catalog_table",
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ingest_id"], ["ingest.id"], name="fk_table_version_ingest_id_ingest"
        ),
    )
    op.create_table(
        "version_partition",
        sa.Column("table_name", NAME, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("norder", sa.Integer(), nullable=False),
        sa.Column("npix", sa.BigInteger(), nullable=False),
        sa.Column("healpix29_start", sa.BigInteger(), nullable=False),
        sa.Column("num_rows", sa.BigInteger(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint(
            "table_name", "version", "norder", "npix", name="pk_version_partition"
        ),
        _version_foreign_key("version_partition"),
    )
    op.create_index(
        "ix_version_partition_start",
        "version_partition",
        ["table_name", "version", "healpix29_start"],
        unique=True,
    )
    op.create_table(
        "version_file",
        sa.Column("table_name", NAME, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("table_name", "version", "path", name="pk_version_file"),
        _version_foreign_key("version_file"),
    )


def _version_foreign_key(table: str) -> sa.ForeignKeyConstraint:
    """The key that makes ``table``'s rows belong to (and cascade from) one version."""
    return sa.ForeignKeyConstraint(
        ["table_name", "version"],
        ["table_version.table_name", "table_version.version"],
        name=f"fk_{table}_table_name_version_table_version",
        onupdate="CASCADE",
        ondelete="CASCADE",
    )


def downgrade() -> None:
    """Drop everything the upgrade created."""
    op.drop_index("ix_version_partition_start", table_name="version_partition")
    for name in ("version_file", "version_partition", "table_version", "ingest_input"):
        op.drop_table(name)
    op.drop_index("ix_ingest_status", table_name="ingest")
    op.drop_index("ix_ingest_table_name", table_name="ingest")
    for name in ("ingest", "catalog_column", "catalog_table"):
        op.drop_table(name)
