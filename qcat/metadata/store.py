"""The metadata store: catalog tables, their versions, and the ingest log.

Publishing is one database transaction (:meth:`MetadataStore.commit_version`):
readers see either the previous version of a table or the complete new one,
never a part. Table names are ``schema.table`` and case-insensitive.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import URL, Connection, Engine, Row, func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from qcat.errors import ConfigError, IngestError, NotFoundError, SchemaError
from qcat.metadata.database import create_metadata_engine, read_transaction, write_transaction
from qcat.metadata.migrate import upgrade_to_head
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
from qcat.metadata.tables import (
    NAME_LENGTH,
    catalog_column,
    catalog_table,
    ingest,
    ingest_input,
    table_version,
    version_file,
    version_partition,
)
from qcat.schema import TableSpec

#: Environment variable naming the metadata database (e.g. a PostgreSQL URL).
METADATA_URL_ENV = "QCAT_METADATA_URL"

#: File name of the embedded SQLite metadata database inside the data directory.
SQLITE_FILE_NAME = "qcat.sqlite"

HEALPIX_ORDER = 29  # order of the per-row ``_healpix_29`` index

_SHA256 = re.compile(r"[0-9a-f]{64}")


class MetadataStore:
    """Catalog metadata in a SQL database (SQLite file or PostgreSQL).

    Opening a store upgrades its schema to the newest migration. Every method
    runs in its own transaction, so a store may be shared by threads and the
    same database by many processes.
    """

    def __init__(self, url: str | URL) -> None:
        """Open the database at the SQLAlchemy ``url`` and upgrade its schema."""
        self._engine = create_metadata_engine(url)
        self._watch: sqlite3.Connection | None = None  # see change_count
        self._watch_lock = threading.Lock()
        try:
            _upgrade_waiting_for_locks(self._engine)
        except OperationalError as e:
            self._engine.dispose()
            where = self._engine.url.render_as_string(hide_password=True)
            raise ConfigError(f"metadata store {where}: cannot open: {e.orig}") from e
        except BaseException:
            self._engine.dispose()
            raise

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> MetadataStore:
        """The store of a data directory: ``$QCAT_METADATA_URL`` if set, else its SQLite file.

        The data directory is created when missing.
        """
        url = os.environ.get(METADATA_URL_ENV)
        if url:
            return cls(url)
        directory = Path(data_dir)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"{directory}: cannot create the data directory: {e}") from e
        database = (directory / SQLITE_FILE_NAME).resolve()
        return cls(URL.create("sqlite", database=str(database)))

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for modules that read the metadata tables directly)."""
        return self._engine

    def close(self) -> None:
        """Release the database connections."""
        with self._watch_lock:
            if self._watch is not None:
                self._watch.close()
                self._watch = None
        self._engine.dispose()

    def change_count(self) -> int | None:
        """A number that changes whenever anything else commits to the database.

        Readers that cache what they read (the czar's catalog snapshot) ask
        this first: for a SQLite file it is ``PRAGMA data_version`` on a
        connection of its own, microseconds instead of a query through
        SQLAlchemy. ``None`` when the database cannot tell so cheaply
        (PostgreSQL): read it again.
        """
        database = self._engine.url.database
        if self._engine.dialect.name != "sqlite" or not database or database == ":memory:":
            return None
        with self._watch_lock:
            if self._watch is None:
                self._watch = sqlite3.connect(database, check_same_thread=False)
            count: int = self._watch.execute("PRAGMA data_version").fetchone()[0]
            return count

    def __enter__(self) -> MetadataStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- ingest transactions ------------------------------------------------

    def begin_ingest(
        self,
        table: str,
        operation: str,
        inputs: list[InputFileRecord],
        staging_path: str,
        pid: int,
    ) -> int:
        """Log the start of an ingest, append or attach of ``table``; return its id.

        ``staging_path`` is the directory the new version is built in; it
        counts as live (see :meth:`live_paths`) while the ingest runs.
        """
        _check_table_name(table)
        if operation not in OPERATIONS:
            raise ValueError(f"operation {operation!r} is not one of {OPERATIONS}")
        with write_transaction(self._engine) as conn:
            result = conn.execute(
                ingest.insert().values(
                    table_name=table,
                    operation=operation,
                    status="running",
                    staging_path=staging_path,
                    pid=pid,
                    started_at=_now(),
                )
            )
            key = result.inserted_primary_key
            assert key is not None, "INSERT returned no primary key"
            ingest_id = int(key[0])
            if inputs:
                conn.execute(
                    ingest_input.insert(),
                    [
                        {
                            "ingest_id": ingest_id,
                            "ordinal": i,
                            "path": f.path,
                            "size": f.size,
                            "sha256": f.sha256,
                        }
                        for i, f in enumerate(inputs)
                    ],
                )
        return ingest_id

    def fail_ingest(self, ingest_id: int, message: str) -> None:
        """Record that a running ingest failed, and why."""
        with write_transaction(self._engine) as conn:
            row = _ingest_row(conn, ingest_id)
            if row.status != "running":
                raise IngestError(
                    f"ingest {ingest_id} of table {row.table_name} is {row.status}; "
                    "only a running ingest can fail"
                )
            conn.execute(
                ingest.update()
                .where(ingest.c.id == ingest_id)
                .values(status="failed", finished_at=_now(), message=message)
            )

    def mark_cleaned(self, ingest_id: int) -> None:
        """Record that a failed or abandoned ingest's staging directory is removed."""
        with write_transaction(self._engine) as conn:
            row = _ingest_row(conn, ingest_id)
            if row.status == "committed":
                raise IngestError(
                    f"ingest {ingest_id} of table {row.table_name} is committed; "
                    "its files are published and cannot be cleaned"
                )
            conn.execute(
                ingest.update()
                .where(ingest.c.id == ingest_id)
                .values(status="cleaned", finished_at=row.finished_at or _now())
            )

    def ingests(self, table: str | None = None, status: str | None = None) -> list[IngestRecord]:
        """The ingest log, oldest first, optionally of one table and/or one status."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"status {status!r} is not one of {STATUSES}")
        conditions = []
        if table is not None:
            conditions.append(func.lower(ingest.c.table_name) == _fold(table))
        if status is not None:
            conditions.append(ingest.c.status == status)
        with read_transaction(self._engine) as conn:
            rows = conn.execute(
                select(ingest, table_version.c.version)
                .select_from(ingest.outerjoin(table_version))
                .where(*conditions)
                .order_by(ingest.c.id)
            ).all()
            input_rows = conn.execute(
                select(ingest_input)
                .where(ingest_input.c.ingest_id.in_(select(ingest.c.id).where(*conditions)))
                .order_by(ingest_input.c.ingest_id, ingest_input.c.ordinal)
            ).all()
        inputs: dict[int, list[InputFileRecord]] = {}
        for r in input_rows:
            inputs.setdefault(r.ingest_id, []).append(InputFileRecord(r.path, r.size, r.sha256))
        return [_ingest_record(r, inputs.get(r.id, [])) for r in rows]

    def committed_input_checksums(self, table: str) -> set[str]:
        """SHA-256 of every input file whose data is in the current version of ``table``.

        These are the inputs of the ingest that built the current version and,
        when that was an append, of the versions it was built on, back to the
        last ingest from scratch. Empty for a table not published yet.
        """
        with read_transaction(self._engine) as conn:
            row = conn.execute(
                select(catalog_table).where(catalog_table.c.name_folded == _fold(table))
            ).first()
            if row is None or row.current_version is None:
                return set()
            lineage = {
                r.version: (r.ingest_id, r.base_version)
                for r in conn.execute(
                    select(
                        table_version.c.version,
                        table_version.c.ingest_id,
                        table_version.c.base_version,
                    ).where(table_version.c.table_name == row.name)
                )
            }
            ingest_ids = []
            version: int | None = row.current_version
            while version is not None and version in lineage:
                ingest_id, version = lineage[version]
                ingest_ids.append(ingest_id)
            checksums = conn.execute(
                select(ingest_input.c.sha256)
                .distinct()
                .where(ingest_input.c.ingest_id.in_(ingest_ids))
            ).scalars()
            return set(checksums)

    # -- publishing ---------------------------------------------------------

    def commit_version(
        self,
        ingest_id: int,
        spec: TableSpec,
        *,
        path: str,
        num_rows: int,
        partitions: list[PartitionRecord],
        files: list[FileRecord],
        margin_path: str | None,
        margin_arcsec: float | None,
        index_path: str | None,
        attached: bool = False,
        properties: dict[str, Any] | None = None,
        expected_current: int | None = None,
    ) -> VersionRecord:
        """Publish a new version of ``spec``'s table, built by ingest ``ingest_id``.

        In one transaction: create or update the table and its columns, add
        the version (previous highest number + 1) with its partitions and
        files, make it the current version, and mark the ingest committed.
        Either all of it becomes visible or, on any error, nothing does.

        ``expected_current`` guards against concurrent changes: when given,
        the table's current version must be this number (``0``: the table
        must have no version yet), else :class:`IngestError` is raised.
        """
        commit = VersionCommit(
            ingest_id,
            spec,
            path,
            num_rows,
            partitions,
            files,
            margin_path,
            margin_arcsec,
            index_path,
            attached,
            properties,
            expected_current,
        )
        return self.commit_versions([commit])[0]

    def commit_versions(self, commits: list[VersionCommit]) -> list[VersionRecord]:
        """Publish several table versions in one transaction: all or none.

        A director append and the rebuild of its child tables commit together,
        so a reader never sees a director whose children are placed on its
        old partitions.
        """
        for c in commits:
            _check_json_values(c.spec.qualified_name, c.partitions, dict(c.properties or {}))
            for f in c.files:
                if f.role not in FILE_ROLES:
                    raise ValueError(f"file {f.path}: role {f.role!r} is not one of {FILE_ROLES}")
                _check_sha256(f.sha256, f"file {f.path}")
        with write_transaction(self._engine) as conn:
            return [_commit_one(conn, c) for c in commits]

    # -- reading ------------------------------------------------------------

    def table(self, name: str) -> TableRecord:
        """The table called ``name`` (case-insensitive ``schema.table``).

        Raises :class:`NotFoundError` naming it, and similar names, if absent.
        """
        with read_transaction(self._engine) as conn:
            return _table_record(_table_row(conn, name))

    def tables(self) -> list[TableRecord]:
        """All tables, by name."""
        with read_transaction(self._engine) as conn:
            rows = conn.execute(select(catalog_table).order_by(catalog_table.c.name_folded))
            return [_table_record(r) for r in rows]

    def current_versions(self) -> dict[str, int | None]:
        """Each table's current version number, by name: a cheap test for a changed catalog."""
        with read_transaction(self._engine) as conn:
            rows = conn.execute(select(catalog_table.c.name, catalog_table.c.current_version))
            return {r.name: r.current_version for r in rows}

    def current_version(self, name: str) -> VersionRecord | None:
        """The version of table ``name`` that readers see; ``None`` if there is none."""
        with read_transaction(self._engine) as conn:
            row = _table_row(conn, name)
            if row.current_version is None:
                return None
            return _version_record(_version_row(conn, row.name, row.current_version))

    def versions(self, name: str) -> list[VersionRecord]:
        """Every published version of table ``name``, oldest first."""
        with read_transaction(self._engine) as conn:
            row = _table_row(conn, name)
            rows = conn.execute(
                select(table_version)
                .where(table_version.c.table_name == row.name)
                .order_by(table_version.c.version)
            )
            return [_version_record(r) for r in rows]

    def partitions(self, name: str, version: int | None = None) -> list[PartitionRecord]:
        """Partitions of a version (default: the current one) in ``_healpix_29`` order."""
        with read_transaction(self._engine) as conn:
            row = _table_row(conn, name)
            number = _resolve_version(conn, row, version)
            if number is None:
                return []
            rows = conn.execute(
                select(version_partition)
                .where(
                    version_partition.c.table_name == row.name,
                    version_partition.c.version == number,
                )
                .order_by(version_partition.c.healpix29_start)
            )
            return [PartitionRecord(r.norder, r.npix, r.num_rows, r.path, r.stats) for r in rows]

    def files(self, name: str | None = None, version: int | None = None) -> list[FileRecord]:
        """Files of one version of a table (default: the current one).

        Without a table name: the files of the current versions of all tables.
        """
        with read_transaction(self._engine) as conn:
            if name is None:
                if version is not None:
                    raise ValueError("a version number needs a table name")
                query = (
                    select(version_file)
                    .join(
                        catalog_table,
                        (catalog_table.c.name == version_file.c.table_name)
                        & (catalog_table.c.current_version == version_file.c.version),
                    )
                    .order_by(catalog_table.c.name_folded, version_file.c.path)
                )
            else:
                row = _table_row(conn, name)
                number = _resolve_version(conn, row, version)
                if number is None:
                    return []
                query = (
                    select(version_file)
                    .where(
                        version_file.c.table_name == row.name,
                        version_file.c.version == number,
                    )
                    .order_by(version_file.c.path)
                )
            return [FileRecord(r.path, r.size, r.sha256, r.role) for r in conn.execute(query)]

    def attached_dirs(self) -> list[str]:
        """Directories of the attached HATS catalogs of every recorded version, sorted.

        Workers may read these (and nothing else outside ``tables/``).
        """
        with read_transaction(self._engine) as conn:
            rows = conn.execute(
                select(table_version.c.properties).where(table_version.c.attached.is_(True))
            ).scalars()
            found = {props.get("hats_dir") for props in rows if isinstance(props, dict)}
        return sorted(d for d in found if isinstance(d, str) and d)

    def live_paths(self) -> set[str]:
        """Paths clean-up must keep: current versions (with margins, indexes) and staging dirs."""
        with read_transaction(self._engine) as conn:
            current = conn.execute(
                select(
                    table_version.c.path, table_version.c.margin_path, table_version.c.index_path
                ).join(
                    catalog_table,
                    (catalog_table.c.name == table_version.c.table_name)
                    & (catalog_table.c.current_version == table_version.c.version),
                )
            ).all()
            staging = conn.execute(
                select(ingest.c.staging_path).where(ingest.c.status == "running")
            ).scalars()
            paths = {p for r in current for p in r if p is not None}
            paths.update(staging)
            return paths


# -- helpers -------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (SQLite returns naive UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _fold(name: str) -> str:
    return name.lower()


def _check_table_name(name: str) -> None:
    schema, _, table = name.partition(".")
    if not schema or not table:
        raise SchemaError(f"table name {name!r} must be schema.table")
    if len(name) > NAME_LENGTH:
        raise SchemaError(f"table name {name!r} is longer than {NAME_LENGTH} characters")


def _check_sha256(value: str, what: str) -> None:
    if not _SHA256.fullmatch(value):
        raise ValueError(f"{what}: {value!r} is not a lower-case hex SHA-256 digest")


def _check_json_values(
    table: str, partitions: Iterable[PartitionRecord], properties: dict[str, Any]
) -> None:
    """Fail early, naming the culprit, on values JSON (and PostgreSQL) cannot hold."""
    for p in partitions:
        for column, bounds in p.stats.items():
            try:
                json.dumps(bounds, allow_nan=False)
            except (TypeError, ValueError) as e:
                raise IngestError(
                    f"table {table}, partition Norder={p.order}/Npix={p.pixel}: "
                    f"statistics of column {column!r} are not JSON values: {e}"
                ) from e
    try:
        json.dumps(properties, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise IngestError(f"table {table}: version properties are not JSON values: {e}") from e


def _ingest_row(conn: Connection, ingest_id: int) -> Row[Any]:
    row = conn.execute(select(ingest).where(ingest.c.id == ingest_id)).first()
    if row is None:
        raise NotFoundError(f"no ingest with id {ingest_id}")
    return row


def _table_row(conn: Connection, name: str) -> Row[Any]:
    row = conn.execute(
        select(catalog_table).where(catalog_table.c.name_folded == _fold(name))
    ).first()
    if row is None:
        known = list(conn.execute(select(catalog_table.c.name)).scalars())
        raise NotFoundError(_unknown_table_message(name, known))
    return row


def _unknown_table_message(name: str, known: list[str]) -> str:
    if not known:
        return f"no table {name!r}: the catalog has no tables yet"
    by_folded = {_fold(k): k for k in known}
    wanted = _fold(name)
    # A name without its schema, or with the wrong one, is the common slip.
    bare = wanted.rpartition(".")[2]
    close = [k for f, k in by_folded.items() if f.rpartition(".")[2] == bare]
    close += [
        by_folded[f]
        for f in difflib.get_close_matches(wanted, list(by_folded), n=3, cutoff=0.6)
        if by_folded[f] not in close
    ]
    if close:
        return f"no table {name!r}; did you mean {', '.join(sorted(close))}?"
    shown = sorted(known)[:10]
    more = f" and {len(known) - len(shown)} more" if len(known) > len(shown) else ""
    return f"no table {name!r}; the catalog has {', '.join(shown)}{more}"


def _lock_table(conn: Connection, name: str) -> int | None:
    """Lock the table's row for this transaction; return its current version."""
    # FOR UPDATE matters on PostgreSQL; SQLite's write lock already covers it.
    row = conn.execute(
        select(catalog_table.c.current_version)
        .where(catalog_table.c.name_folded == _fold(name))
        .with_for_update()
    ).first()
    return None if row is None else row.current_version


def _save_table(conn: Connection, spec: TableSpec) -> None:
    """Insert or update the table row and replace its column rows, from ``spec``."""
    name = spec.qualified_name
    values = {
        "schema_name": spec.schema_name,
        "kind": spec.kind,
        "description": spec.description,
        "spec": spec.to_dict(),
        "updated_at": _now(),
    }
    existing = conn.execute(
        select(catalog_table.c.name).where(catalog_table.c.name_folded == _fold(name))
    ).scalar()
    if existing is None:
        conn.execute(
            catalog_table.insert().values(
                name=name, name_folded=_fold(name), created_at=_now(), **values
            )
        )
    else:
        if existing != name:
            # A change of case renames the table; foreign keys cascade it to all rows.
            values["name"] = name
        conn.execute(
            catalog_table.update().where(catalog_table.c.name == existing).values(**values)
        )
    conn.execute(catalog_column.delete().where(catalog_column.c.table_name == name))
    conn.execute(
        catalog_column.insert(),
        [
            {
                "table_name": name,
                "ordinal": i,
                "name": c.name,
                "datatype": c.datatype,
                "nullable": c.nullable,
                "description": c.description,
                "unit": c.unit,
                "ucd": c.ucd,
                "length": c.length,
                "principal": c.principal,
            }
            for i, c in enumerate(spec.columns)
        ],
    )


def _next_version(conn: Connection, name: str) -> int:
    highest = conn.execute(
        select(func.max(table_version.c.version)).where(table_version.c.table_name == name)
    ).scalar()
    return (highest or 0) + 1


def _insert_partitions(
    conn: Connection, name: str, number: int, partitions: list[PartitionRecord]
) -> None:
    if not partitions:
        return
    conn.execute(
        version_partition.insert(),
        [
            {
                "table_name": name,
                "version": number,
                "norder": p.order,
                "npix": p.pixel,
                "healpix29_start": p.pixel << (2 * (HEALPIX_ORDER - p.order)),
                "num_rows": p.num_rows,
                "path": p.path,
                "stats": p.stats,
            }
            for p in partitions
        ],
    )


def _insert_files(conn: Connection, name: str, number: int, files: list[FileRecord]) -> None:
    if not files:
        return
    conn.execute(
        version_file.insert(),
        [
            {
                "table_name": name,
                "version": number,
                "path": f.path,
                "size": f.size,
                "sha256": f.sha256,
                "role": f.role,
            }
            for f in files
        ],
    )


def _resolve_version(conn: Connection, table_row: Row[Any], version: int | None) -> int | None:
    """``version`` checked to exist, or the table's current version when ``None``."""
    if version is None:
        current: int | None = table_row.current_version
        return current
    _version_row(conn, table_row.name, version)
    return version


def _version_row(conn: Connection, name: str, number: int) -> Row[Any]:
    row = conn.execute(
        select(table_version).where(
            table_version.c.table_name == name, table_version.c.version == number
        )
    ).first()
    if row is None:
        raise NotFoundError(f"table {name} has no version {number}")
    return row


def _table_record(row: Row[Any]) -> TableRecord:
    return TableRecord(
        name=row.name,
        spec=TableSpec.from_dict(row.spec),
        kind=row.kind,
        current_version=row.current_version,
        created_at=_utc(row.created_at),
    )


def _version_record(row: Row[Any]) -> VersionRecord:
    return VersionRecord(
        table=row.table_name,
        version=row.version,
        path=row.path,
        created_at=_utc(row.created_at),
        num_rows=row.num_rows,
        num_partitions=row.num_partitions,
        margin_path=row.margin_path,
        margin_arcsec=row.margin_arcsec,
        index_path=row.index_path,
        attached=bool(row.attached),
        properties=dict(row.properties),
    )


def _ingest_record(row: Row[Any], inputs: list[InputFileRecord]) -> IngestRecord:
    return IngestRecord(
        id=row.id,
        table=row.table_name,
        operation=row.operation,
        status=row.status,
        staging_path=row.staging_path,
        pid=row.pid,
        started_at=_utc(row.started_at),
        finished_at=None if row.finished_at is None else _utc(row.finished_at),
        message=row.message,
        inputs=inputs,
        version=row.version,
    )


def _commit_one(conn: Connection, c: VersionCommit) -> VersionRecord:
    """Publish one version inside the caller's transaction."""
    run = _ingest_row(conn, c.ingest_id)
    if run.status != "running":
        raise IngestError(
            f"ingest {c.ingest_id} of table {run.table_name} is {run.status}; "
            "only a running ingest can be committed"
        )
    name = c.spec.qualified_name
    if _fold(run.table_name) != _fold(name):
        raise IngestError(f"ingest {c.ingest_id} is of table {run.table_name}, not {name}")
    current = _lock_table(conn, name)
    if c.expected_current is not None and (current or 0) != c.expected_current:
        raise IngestError(
            f"table {name} changed during ingest: its current "
            f"version is {current or 'none'}, the ingest was built on "
            f"{c.expected_current or 'none'}; run the ingest again"
        )
    try:
        _save_table(conn, c.spec)
        number = _next_version(conn, name)
        conn.execute(
            table_version.insert().values(
                table_name=name,
                version=number,
                ingest_id=c.ingest_id,
                base_version=current if run.operation == "append" else None,
                path=c.path,
                created_at=_now(),
                num_rows=c.num_rows,
                num_partitions=len(c.partitions),
                margin_path=c.margin_path,
                margin_arcsec=c.margin_arcsec,
                index_path=c.index_path,
                attached=c.attached,
                properties=dict(c.properties or {}),
            )
        )
        _insert_partitions(conn, name, number, c.partitions)
        _insert_files(conn, name, number, c.files)
        conn.execute(
            catalog_table.update()
            .where(catalog_table.c.name == name)
            .values(current_version=number, updated_at=_now())
        )
        conn.execute(
            ingest.update()
            .where(ingest.c.id == c.ingest_id)
            .values(status="committed", finished_at=_now())
        )
    except IntegrityError as e:
        raise IngestError(f"table {name}: cannot publish the new version: {e.orig}") from e
    return _version_record(_version_row(conn, name, number))


#: Seconds a new store keeps retrying while other processes hold SQLite's locks.
OPEN_RETRY_S = 60.0


def _upgrade_waiting_for_locks(engine: Engine) -> None:
    """:func:`upgrade_to_head`, retried while SQLite reports the database locked.

    Several processes opening a new data directory at once (a service, its
    workers, an ingest) race to create it: switching a fresh file to WAL
    journaling and the first migration take locks that SQLite does not
    always wait for with its busy timeout, so the losers retry here.
    """
    deadline = time.monotonic() + OPEN_RETRY_S
    delay = 0.01
    while True:
        try:
            upgrade_to_head(engine)
            return
        except OperationalError as e:
            if "locked" not in str(e.orig) or time.monotonic() > deadline:
                raise
            engine.dispose()  # a connection may be left mid-way; start afresh
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
