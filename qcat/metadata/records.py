"""Immutable values the metadata store returns to its callers.

All paths are relative to the data directory and written as POSIX strings,
so a data directory can move (or be mounted elsewhere on another node)
without rewriting the metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from qcat.schema import TableSpec

#: What an ingest transaction does: create or replace a table, add rows to the
#: current version, or publish an existing HATS catalog without rewriting it.
OPERATIONS = ("ingest", "append", "attach")

#: Life cycle of an ingest transaction: ``running`` until it is committed or
#: fails; a failed (or abandoned running) one becomes ``cleaned`` once its
#: staging directory is removed.
STATUSES = ("running", "committed", "failed", "cleaned")

#: What a file of a version holds.
FILE_ROLES = ("data", "margin", "index", "metadata")


@dataclass(frozen=True)
class InputFileRecord:
    """One input file of an ingest, identified by its content checksum."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class FileRecord:
    """One file of a table version; ``role`` is one of :data:`FILE_ROLES`."""

    path: str
    size: int
    sha256: str
    role: str


@dataclass(frozen=True)
class PartitionRecord:
    """One HATS partition of a version.

    ``stats`` maps a column name to ``[min, max]`` over the partition's rows
    (JSON values), which the planner uses to skip partitions.
    """

    order: int
    pixel: int
    num_rows: int
    path: str
    stats: dict[str, list[Any]]


@dataclass(frozen=True)
class VersionRecord:
    """One immutable, published version of a table."""

    table: str
    version: int
    path: str
    created_at: datetime
    num_rows: int
    num_partitions: int
    margin_path: str | None
    margin_arcsec: float | None
    index_path: str | None
    attached: bool
    properties: dict[str, Any]


@dataclass(frozen=True)
class TableRecord:
    """A catalog table: its description and the version readers see."""

    name: str
    spec: TableSpec
    kind: str
    current_version: int | None
    created_at: datetime


@dataclass(frozen=True)
class IngestRecord:
    """One ingest, append or attach attempt, whatever its outcome.

    ``version`` is the version the attempt published, once committed.
    """

    id: int
    table: str
    operation: str
    status: str
    staging_path: str
    pid: int
    started_at: datetime
    finished_at: datetime | None
    message: str | None
    inputs: list[InputFileRecord]
    version: int | None


@dataclass(frozen=True)
class VersionCommit:
    """Everything needed to publish one new table version (see ``commit_versions``).

    ``expected_current`` guards against concurrent changes: when given, the
    table's current version must be this number (``0``: no version yet).
    """

    ingest_id: int
    spec: TableSpec
    path: str
    num_rows: int
    partitions: list[PartitionRecord]
    files: list[FileRecord]
    margin_path: str | None = None
    margin_arcsec: float | None = None
    index_path: str | None = None
    attached: bool = False
    properties: dict[str, Any] | None = None
    expected_current: int | None = None
