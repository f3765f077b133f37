"""The metadata store: tables, columns, versions, partitions, files, ingests.

SQLAlchemy Core on SQLite (embedded default) or PostgreSQL (cluster), with
Alembic migrations applied when a store is opened.
"""

from qcat.metadata.records import (
    FILE_ROLES,
    OPERATIONS,
    STATUSES,
    FileRecord,
    IngestRecord,
    InputFileRecord,
    PartitionRecord,
    TableRecord,
    VersionCommit,
    VersionRecord,
)
from qcat.metadata.store import METADATA_URL_ENV, MetadataStore

__all__ = [
    "FILE_ROLES",
    "METADATA_URL_ENV",
    "OPERATIONS",
    "STATUSES",
    "FileRecord",
    "IngestRecord",
    "InputFileRecord",
    "MetadataStore",
    "PartitionRecord",
    "TableRecord",
    "VersionCommit",
    "VersionRecord",
]
