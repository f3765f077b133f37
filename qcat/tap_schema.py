"""TAP_SCHEMA: the service's table metadata as five ordinary qcat tables.

TAP 1.1 (section 4) describes a service's tables in the tables
``TAP_SCHEMA.schemas``, ``tables``, ``columns``, ``keys`` and ``key_columns``.
qcat generates their rows from the Felis metadata of every published table
(:func:`tap_schema_tables`) and publishes them as plain, unpartitioned tables
(:func:`refresh_tap_schema`), so they are versioned, swapped in at one commit
and queried with ADQL by the ordinary query engine. Their own description is
the Felis file ``qcat/tap_schema.yaml``, and their rows describe themselves.

The same description (:func:`describe`) feeds the VOSI ``/tables``
documents (``services/tap/vosi_tables.py``), so the two always agree.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib.resources import files
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from partition.checksums import sha256_file
from partition.hats_writer import HEALPIX_COLUMN
from partition.ingest import PLAIN_FILE, current_version_or_none
from partition.transaction import publish_dir, recover, table_dir, table_lock
from qcat.czar.adql.keywords import is_reserved
from qcat.czar.catalog import CatalogSnapshot
from qcat.errors import ConfigError, IngestError
from qcat.metadata.records import FileRecord, VersionCommit
from qcat.metadata.store import MetadataStore
from qcat.schema import ColumnSpec, TableSpec, load_felis

#: Name of the schema TAP 1.1 reserves for the metadata tables.
TAP_SCHEMA = "TAP_SCHEMA"

#: File name of the packaged Felis schema of TAP_SCHEMA.
SCHEMA_FILE = "tap_schema.yaml"

#: Seconds :func:`refresh_tap_schema` waits for a concurrent refresh to finish.
LOCK_WAIT_S = 30.0

#: Schemas whose columns a standard defines (``std = 1``); elsewhere a column is
#: standard when its Felis ``tap:std`` says so (``ivoa.ObsCore`` says it per column).
_STANDARD_SCHEMAS = frozenset({TAP_SCHEMA.lower()})

#: Listing order of schemas: the catalog's own first, then ``ivoa``, then TAP_SCHEMA.
_SCHEMA_RANK = {"ivoa": 1, TAP_SCHEMA.lower(): 2}


# -- VOTable datatypes ---------------------------------------------------------------


@dataclass(frozen=True)
class VOTableType:
    """How a column's values are written in a VOTable (and TAP_SCHEMA, VOSI)."""

    datatype: str
    arraysize: str | None = None
    xtype: str | None = None


#: Felis datatype -> VOTable datatype. ``byte`` is stored as a signed int8, which
#: VOTable's unsignedByte cannot hold, so it is declared (and written) as short.
_VOTABLE_DATATYPE = {
    "boolean": "boolean",
    "byte": "short",
    "short": "short",
    "int": "int",
    "long": "long",
    "float": "float",
    "double": "double",
    "char": "char",
    "string": "char",
    "unicode": "unicodeChar",
    "text": "char",
    "binary": "unsignedByte",
    "timestamp": "char",
}

#: Felis datatypes whose values are arrays of bounded (``length``) or any size.
_VARIABLE = frozenset({"string", "unicode", "binary", "text", "timestamp"})


def votable_type(column: ColumnSpec) -> VOTableType:
    """The VOTable datatype, arraysize and xtype of a Felis column.

    ``char`` of length n is fixed-size (``n``; a single character has no
    arraysize), ``string``/``unicode``/``binary`` of length n are bounded
    (``n*``), unbounded ones and ``text`` are ``*``; a timestamp is an
    ISO 8601 string with xtype ``timestamp`` (DALI). A Felis ``votable:xtype``
    (``adql:REGION`` of ObsCore's s_region) is kept.
    """
    datatype = _VOTABLE_DATATYPE[column.datatype]
    xtype = column.xtype or ("timestamp" if column.datatype == "timestamp" else None)
    n = column.length
    if column.datatype == "char":
        arraysize = None if n == 1 else (str(n) if n else "*")
    elif column.datatype in _VARIABLE:
        arraysize = f"{n}*" if n and column.datatype != "text" else "*"
    else:
        arraysize = None
    return VOTableType(datatype, arraysize, xtype)


_REGULAR = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def adql_name(name: str) -> str:
    """``name`` as written in ADQL: delimited (``"size"``) when not a regular identifier."""
    if _REGULAR.fullmatch(name) and not is_reserved(name):
        return name
    return '"' + name.replace('"', '""') + '"'


def adql_table_name(spec: TableSpec) -> str:
    """The qualified table name as written in a FROM clause."""
    return f"{adql_name(spec.schema_name)}.{adql_name(spec.name)}"


# -- the description of the published tables -------------------------------------------


@dataclass(frozen=True)
class ColumnInfo:
    """One column as TAP_SCHEMA.columns and VOSI describe it."""

    name: str
    type: VOTableType
    size: int | None
    description: str | None
    unit: str | None
    ucd: str | None
    indexed: bool
    principal: bool
    std: bool
    column_index: int
    nullable: bool
    primary: bool
    utype: str | None = None


@dataclass(frozen=True)
class ForeignKeyInfo:
    """A foreign key: ``(from column, target column)`` pairs from one table to another."""

    key_id: str
    from_table: str
    target_table: str
    columns: tuple[tuple[str, str], ...]
    description: str | None


@dataclass(frozen=True)
class TableInfo:
    """One table with its columns and foreign keys."""

    schema_name: str
    name: str
    description: str | None
    table_index: int | None
    columns: tuple[ColumnInfo, ...]
    foreign_keys: tuple[ForeignKeyInfo, ...]
    nrows: int | None = None
    table_type: str = "table"
    utype: str | None = None


@dataclass(frozen=True)
class SchemaInfo:
    """One schema with its tables, in listing order."""

    name: str
    description: str | None
    schema_index: int
    tables: tuple[TableInfo, ...]


def describe_table(
    spec: TableSpec,
    tables: Mapping[str, TableSpec],
    *,
    table_index: int | None = None,
    nrows: int | None = None,
) -> TableInfo:
    """Describe ``spec``'s table; ``tables`` (lower-case name -> spec) are the possible key targets.

    A column is *indexed* when constraints on it are served without a full
    scan: the primary key (plain tables are sorted by it, others have
    Parquet statistics), a director table's key (director index) and
    positions (HEALPix partitions), a child table's director key (placed by
    the director index). ``_healpix_29`` is internal and never described.
    """
    indexed = set(spec.primary_key)
    if spec.kind == "director":
        indexed.update(c for c in (spec.ra_column, spec.dec_column) if c)
    if spec.kind == "child" and spec.director_fk_column:
        indexed.add(spec.director_fk_column)
    standard_schema = spec.schema_name.lower() in _STANDARD_SCHEMAS
    columns = tuple(
        ColumnInfo(
            name=adql_name(c.name),
            type=votable_type(c),
            # TAP 1.1: "size" (deprecated) repeats a numeric arraysize, so a scalar has none.
            size=_size(c, votable_type(c)),
            description=c.description,
            unit=c.unit or None,
            ucd=c.ucd or None,
            indexed=c.name in indexed,
            principal=c.principal,
            # Felis tap:std 1 marks a standard's column in another schema (ObsCore's).
            std=standard_schema or bool(c.std),
            column_index=i,
            nullable=c.nullable,
            primary=c.name in spec.primary_key,
            utype=c.utype or None,
        )
        for i, c in enumerate((c for c in spec.columns if c.name != HEALPIX_COLUMN), start=1)
    )
    return TableInfo(
        schema_name=spec.schema_name,
        name=adql_table_name(spec),
        description=spec.description,
        table_index=table_index,
        columns=columns,
        foreign_keys=tuple(_foreign_keys(spec, tables)),
        nrows=nrows,
        utype=spec.utype or None,
    )


def describe(
    specs: Iterable[TableSpec], nrows: Mapping[str, int] | None = None
) -> list[SchemaInfo]:
    """Schemas and tables of ``specs`` in listing order, with their indexes.

    Schemas: the catalog's own (by name), then ``ivoa``, then TAP_SCHEMA.
    Tables: by name within their schema (TAP_SCHEMA's in the standard's
    order); ``table_index`` runs across schemas so one ``ORDER BY`` lists
    them grouped. ``nrows`` maps lower-case qualified names to row counts.
    """
    by_name = {s.qualified_name.lower(): s for s in specs}
    by_schema: dict[str, list[TableSpec]] = {}  # lower-case schema name -> its tables
    for spec in by_name.values():
        by_schema.setdefault(spec.schema_name.lower(), []).append(spec)
    own_order = {name.lower(): i for i, name in enumerate(tap_schema_specs())}
    schemas = []
    table_index = 0
    ordered = sorted(by_schema, key=lambda s: (_SCHEMA_RANK.get(s, 0), s))
    for schema_index, folded in enumerate(ordered, start=1):
        members = by_schema[folded]
        schema = min(s.schema_name for s in members)  # one spelling if tables disagree on case
        tables = []
        for spec in sorted(
            members,
            key=lambda s: (own_order.get(s.qualified_name.lower(), -1), s.name.lower()),
        ):
            table_index += 1
            count = (nrows or {}).get(spec.qualified_name.lower())
            info = describe_table(spec, by_name, table_index=table_index, nrows=count)
            tables.append(replace(info, schema_name=schema))
        description = tap_schema_description() if folded == TAP_SCHEMA.lower() else None
        schemas.append(SchemaInfo(schema, description, schema_index, tuple(tables)))
    return schemas


def _foreign_keys(spec: TableSpec, tables: Mapping[str, TableSpec]) -> Iterator[ForeignKeyInfo]:
    """A child table's key to its director, and TAP_SCHEMA's keys from its Felis file.

    Felis foreign keys to tables other than a director are not kept in a
    :class:`TableSpec`, so they cannot be described (see the docs).
    """
    director = tables.get((spec.director_table or "").lower())
    if director is not None and spec.director_fk_column:
        ref = spec.director_ref_column or director.director_key or spec.director_fk_column
        yield ForeignKeyInfo(
            key_id=f"{spec.schema_name}.{spec.name}_{spec.director_fk_column}_fkey",
            from_table=adql_table_name(spec),
            target_table=adql_table_name(director),
            columns=((adql_name(spec.director_fk_column), adql_name(ref)),),
            description=(
                f"Each row of {spec.qualified_name} belongs to the row of "
                f"{director.qualified_name} with the same {ref}, and is stored in its partition."
            ),
        )
    if spec.schema_name.lower() == TAP_SCHEMA.lower():
        for key in _tap_schema_keys():
            target = tables.get(key.target_table.lower())
            if key.from_table.lower() == spec.qualified_name.lower() and target is not None:
                yield key


# -- TAP_SCHEMA's own Felis schema --------------------------------------------------------


def schema_path() -> Path:
    """Path of the packaged Felis schema of TAP_SCHEMA."""
    resource = files("qcat").joinpath(SCHEMA_FILE)
    if not isinstance(resource, Path):
        raise ConfigError(f"qcat/{SCHEMA_FILE} is not a file on disk")
    return resource


@functools.cache
def tap_schema_specs() -> dict[str, TableSpec]:
    """The five TAP_SCHEMA tables, by qualified name, in the standard's order."""
    return load_felis(schema_path())


@functools.cache
def _felis_schema() -> Any:
    from felis.datamodel import Schema

    with schema_path().open() as f:
        return Schema.from_stream(f)


def tap_schema_description() -> str | None:
    """The description of the TAP_SCHEMA schema (from its Felis file)."""
    description: str | None = _felis_schema().description
    return description


@functools.cache
def _tap_schema_keys() -> tuple[ForeignKeyInfo, ...]:
    """The foreign keys between the TAP_SCHEMA tables, from their Felis constraints."""
    from felis.datamodel import ForeignKeyConstraint

    schema = _felis_schema()
    column_of = {c.id: (t.name, c.name) for t in schema.tables for c in t.columns}
    keys = []
    for table in schema.tables:
        for con in table.constraints:
            if not isinstance(con, ForeignKeyConstraint):
                continue
            target = column_of[con.referenced_columns[0]][0]
            pairs = tuple(
                (adql_name(column_of[a][1]), adql_name(column_of[b][1]))
                for a, b in zip(con.columns, con.referenced_columns, strict=True)
            )
            keys.append(
                ForeignKeyInfo(
                    key_id=f"{schema.name}.{con.name}",
                    from_table=f"{schema.name}.{table.name}",
                    target_table=f"{schema.name}.{target}",
                    columns=pairs,
                    description=con.description,
                )
            )
    return tuple(keys)


# -- TAP_SCHEMA rows ------------------------------------------------------------------


def published_specs(source: MetadataStore | CatalogSnapshot) -> list[TableSpec]:
    """Specs of every table with a published version."""
    if isinstance(source, CatalogSnapshot):
        return [t.spec for t in source.tables()]
    return [t.spec for t in source.tables() if t.current_version is not None]


def tap_schema_tables(source: MetadataStore | CatalogSnapshot) -> dict[str, pa.Table]:
    """The five TAP_SCHEMA tables (qualified name -> rows) describing ``source``'s tables.

    Every published table is described, and so are the TAP_SCHEMA tables
    themselves, always from the packaged Felis file (whether or not, or in
    which version, they are published yet): these rows are what
    :func:`refresh_tap_schema` publishes.
    """
    own = tap_schema_specs()
    specs = [s for s in published_specs(source) if s.schema_name.lower() != TAP_SCHEMA.lower()]
    schemas = describe([*specs, *own.values()])
    tables = [t for s in schemas for t in s.tables]
    keys = [k for t in tables for k in t.foreign_keys]
    rows: dict[str, list[dict[str, Any]]] = {
        "schemas": [
            {
                "schema_name": s.name,
                "utype": None,
                "description": s.description,
                "schema_index": s.schema_index,
            }
            for s in schemas
        ],
        "tables": [
            {
                "schema_name": t.schema_name,
                "table_name": t.name,
                "table_type": t.table_type,
                "utype": t.utype,
                "description": t.description,
                "table_index": t.table_index,
            }
            for t in tables
        ],
        "columns": [_column_row(t.name, c) for t in tables for c in t.columns],
        "keys": [
            {
                "key_id": k.key_id,
                "from_table": k.from_table,
                "target_table": k.target_table,
                "description": k.description,
                "utype": None,
            }
            for k in keys
        ],
        "key_columns": [
            {"key_id": k.key_id, "from_column": a, "target_column": b}
            for k in keys
            for a, b in k.columns
        ],
    }
    out = {}
    for name, spec in own.items():
        out[name] = pa.Table.from_pylist(rows[spec.name], schema=spec.arrow_schema())
    return out


def _column_row(table: str, c: ColumnInfo) -> dict[str, Any]:
    return {
        "table_name": table,
        "column_name": c.name,
        "datatype": c.type.datatype,
        "arraysize": c.type.arraysize,
        "xtype": c.type.xtype,
        "size": c.size,
        "description": c.description,
        "utype": c.utype,
        "unit": c.unit,
        "ucd": c.ucd,
        "indexed": int(c.indexed),
        "principal": int(c.principal),
        "std": int(c.std),
        "column_index": c.column_index,
    }


# -- publishing -----------------------------------------------------------------------


def refresh_tap_schema(data_dir: Path, *, lock_wait_s: float = LOCK_WAIT_S) -> bool:
    """Publish the TAP_SCHEMA tables again if their rows changed; return whether they did.

    The changed tables are published as new versions of ordinary plain
    tables, in one metadata transaction (readers see the old TAP_SCHEMA or
    the new one, never a mixture), with the ingest's locks, staging,
    checksums and clean-up. Safe to call at any time and from several
    processes: each refresh reads the catalog while holding the TAP_SCHEMA
    locks, so the last one to run describes every commit before it.
    """
    data_dir = Path(data_dir)
    specs = tap_schema_specs()
    keys = sorted(name.lower() for name in specs)
    store = MetadataStore.for_data_dir(data_dir)
    try:
        with _locks(data_dir, keys, lock_wait_s):
            recover(data_dir, store, holding=keys)
            wanted = tap_schema_tables(store)
            changed = [
                name
                for name, rows in wanted.items()
                if not _is_published(data_dir, store, specs[name], rows)
            ]
            if not changed:
                return False
            _publish(data_dir, store, [(specs[n], wanted[n]) for n in changed])
            recover(data_dir, store, holding=keys)
            return True
    finally:
        store.close()


@contextlib.contextmanager
def _locks(data_dir: Path, tables: Sequence[str], wait_s: float) -> Iterator[None]:
    """Hold the ingest locks of ``tables``, waiting up to ``wait_s`` for each."""
    deadline = time.monotonic() + wait_s
    with contextlib.ExitStack() as held:
        for table in tables:
            while True:
                try:
                    held.enter_context(table_lock(data_dir, table))
                    break
                except IngestError:
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.05)
        yield


def _is_published(data_dir: Path, store: MetadataStore, spec: TableSpec, rows: pa.Table) -> bool:
    """Whether the current version of ``spec``'s table has this spec and exactly these rows."""
    version = current_version_or_none(store, spec.qualified_name)
    if version is None or store.table(spec.qualified_name).spec != spec:
        return False
    try:
        published = pq.read_table(data_dir / version.path / PLAIN_FILE)
    except (OSError, pa.ArrowException):
        return False  # unreadable: publish a good version
    return published.equals(rows, check_metadata=False)


def _publish(
    data_dir: Path, store: MetadataStore, tables: list[tuple[TableSpec, pa.Table]]
) -> None:
    """Build one version per table in staging and commit them all in one transaction."""
    started: list[tuple[int, Path]] = []
    built: list[Path] = []
    commits = []
    try:
        for spec, rows in tables:
            name = spec.qualified_name
            work_rel = f"staging/{name.lower()}-{time.time_ns()}"
            work = data_dir / work_rel
            ingest_id = store.begin_ingest(name, "ingest", [], work_rel, os.getpid())
            started.append((ingest_id, work))
            out = work / "out"
            out.mkdir(parents=True)
            path = out / PLAIN_FILE
            pq.write_table(rows, path, compression="zstd")
            size, sha256 = path.stat().st_size, sha256_file(path, sync=True)
            version_rel = (table_dir(data_dir, name.lower()) / work.name).relative_to(data_dir)
            dest = data_dir / version_rel
            publish_dir(out, dest)
            built.append(dest)
            shutil.rmtree(work, ignore_errors=True)
            old = current_version_or_none(store, name)
            commits.append(
                VersionCommit(
                    ingest_id,
                    spec,
                    path=version_rel.as_posix(),
                    num_rows=rows.num_rows,
                    partitions=[],
                    files=[FileRecord((version_rel / PLAIN_FILE).as_posix(), size, sha256, "data")],
                    properties={"generated_by": "qcat.tap_schema"},
                    expected_current=old.version if old else 0,
                )
            )
        store.commit_versions(commits)
    except BaseException as e:
        message = "interrupted" if isinstance(e, KeyboardInterrupt) else str(e)
        for dest in built:
            shutil.rmtree(dest, ignore_errors=True)
        for ingest_id, work in started:
            shutil.rmtree(work, ignore_errors=True)
            store.fail_ingest(ingest_id, message or type(e).__name__)
            store.mark_cleaned(ingest_id)
        raise


def _size(column: ColumnSpec, votable: VOTableType) -> int | None:
    """TAP_SCHEMA ``size``: the length of an array column, NULL for scalars."""
    if votable.arraysize is None:
        return None
    if column.datatype in _VARIABLE or column.datatype == "char":
        return column.length
    return None
