"""The metadata schema as SQLAlchemy Core tables.

This is the schema the newest migration produces (a test compares the two).
Changing it means adding a migration under ``migrations/versions``; the
types are portable ones only, so SQLite and PostgreSQL share the migrations.

Tables are keyed by their qualified name ``schema.table`` as first published;
``name_folded`` (lower case) makes names unique regardless of case, because
ADQL identifiers are case-insensitive. A version's rows (partitions, files)
cascade from it, and everything cascades from its catalog table, so a change
in the name's case on a later ingest reaches every row.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

#: Deterministic constraint names, so later migrations can refer to them on
#: every database (SQLite otherwise leaves constraints unnamed).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

#: Length of table, column and schema names (Felis and TAP names are short).
NAME_LENGTH = 255

Timestamp = DateTime(timezone=True)

catalog_table = Table(
    "catalog_table",
    metadata,
    Column("name", String(NAME_LENGTH), primary_key=True),
    Column("name_folded", String(NAME_LENGTH), nullable=False, unique=True),
    Column("schema_name", String(NAME_LENGTH), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("description", Text),
    Column("spec", JSON, nullable=False),
    Column("current_version", Integer),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

catalog_column = Table(
    "catalog_column",
    metadata,
    Column(
        "table_name",
        String(NAME_LENGTH),
        ForeignKey("catalog_table.name", onupdate="CASCADE", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("ordinal", Integer, nullable=False),
    Column("name", String(NAME_LENGTH), nullable=False),
    Column("datatype", String(32), nullable=False),
    Column("nullable", Boolean, nullable=False),
    Column("description", Text),
    Column("unit", String(NAME_LENGTH)),
    Column("ucd", String(NAME_LENGTH)),
    Column("length", Integer),
    Column("principal", Boolean, nullable=False),
    PrimaryKeyConstraint("table_name", "ordinal"),
    UniqueConstraint("table_name", "name"),
)

ingest = Table(
    "ingest",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # Not a foreign key: an ingest of a new table starts before the table exists.
    Column("table_name", String(NAME_LENGTH), nullable=False, index=True),
    Column("operation", String(16), nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("staging_path", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Timestamp, nullable=False),
    Column("finished_at", Timestamp),
    Column("message", Text),
)

ingest_input = Table(
    "ingest_input",
    metadata,
    Column(
        "ingest_id",
        Integer,
        ForeignKey("ingest.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("ordinal", Integer, nullable=False),
    Column("path", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    PrimaryKeyConstraint("ingest_id", "ordinal"),
)

table_version = Table(
    "table_version",
    metadata,
    Column(
        "table_name",
        String(NAME_LENGTH),
        ForeignKey("catalog_table.name", onupdate="CASCADE", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("version", Integer, nullable=False),
    Column("ingest_id", Integer, ForeignKey("ingest.id"), nullable=False, unique=True),
    # The version an append was built on; NULL for a version built from scratch.
    Column("base_version", Integer),
    Column("path", Text, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("num_rows", BigInteger, nullable=False),
    Column("num_partitions", Integer, nullable=False),
    Column("margin_path", Text),
    Column("margin_arcsec", Float),
    Column("index_path", Text),
    Column("attached", Boolean, nullable=False),
    Column("properties", JSON, nullable=False),
    PrimaryKeyConstraint("table_name", "version"),
)

version_partition = Table(
    "version_partition",
    metadata,
    Column("table_name", String(NAME_LENGTH), nullable=False),
    Column("version", Integer, nullable=False),
    Column("norder", Integer, nullable=False),
    Column("npix", BigInteger, nullable=False),
    # pixel << 2 * (29 - order): partitions are read in this order, and two
    # partitions starting at the same index would overlap.
    Column("healpix29_start", BigInteger, nullable=False),
    Column("num_rows", BigInteger, nullable=False),
    Column("path", Text, nullable=False),
    Column("stats", JSON, nullable=False),
    PrimaryKeyConstraint("table_name", "version", "norder", "npix"),
    ForeignKeyConstraint(
        ["table_name", "version"],
        ["table_version.table_name", "table_version.version"],
        onupdate="CASCADE",
        ondelete="CASCADE",
    ),
    Index(
        "ix_version_partition_start",
        "table_name",
        "version",
        "healpix29_start",
        unique=True,
    ),
)

version_file = Table(
    "version_file",
    metadata,
    Column("table_name", String(NAME_LENGTH), nullable=False),
    Column("version", Integer, nullable=False),
    Column("path", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    PrimaryKeyConstraint("table_name", "version", "path"),
    ForeignKeyConstraint(
        ["table_name", "version"],
        ["table_version.table_name", "table_version.version"],
        onupdate="CASCADE",
        ondelete="CASCADE",
    ),
)

#: UWS jobs of the TAP service (``/tap/async``): their parameters, phase and
#: result survive a restart of the service.
uws_job = Table(
    "uws_job",
    metadata,
    Column("job_id", String(64), primary_key=True),
    # Which service's job (tap, soda): job lists and lookups of a service see only its own.
    Column("service", String(16), nullable=False, server_default="tap", index=True),
    Column("run_id", String(NAME_LENGTH)),
    Column("owner", String(NAME_LENGTH)),
    Column("phase", String(16), nullable=False, index=True),
    Column("parameters", JSON, nullable=False),
    Column("creation_time", Timestamp, nullable=False, index=True),
    Column("start_time", Timestamp),
    Column("end_time", Timestamp),
    Column("execution_duration", Integer, nullable=False),
    Column("destruction", Timestamp, nullable=False, index=True),
    Column("error_type", String(16)),
    Column("error_message", Text),
    # Relative to the data directory; set once the result file is complete.
    Column("result_path", Text),
    Column("result_mime", String(NAME_LENGTH)),
    Column("result_size", BigInteger),
    Column("result_rows", BigInteger),
    Column("result_overflow", Boolean),
    # Results beyond the first: [{"id", "path", "mime", "size"}] (a SODA job's other cutouts).
    Column("more_results", JSON),
)
