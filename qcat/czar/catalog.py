"""A consistent snapshot of the published tables, as the planner sees them.

One query plans and runs against one snapshot: the current version of every
table when the query started. Versions are immutable and the previous one is
kept after an ingest (see ``partition.transaction``), so a query that started
before a commit finishes on the files it planned with.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from partition.layout import Partition, PartitionSet
from qcat.errors import NotFoundError
from qcat.metadata.records import VersionRecord
from qcat.metadata.store import MetadataStore
from qcat.schema import ColumnSpec, TableSpec


@dataclass(frozen=True)
class Chunk:
    """One partition of a table version: its data file and its margin file, if any.

    Paths are relative to the data directory.
    """

    order: int
    pixel: int
    num_rows: int
    path: str
    margin_path: str | None
    #: ``(ra_min, ra_max, dec_min, dec_max)`` of the rows' own positions, from the
    #: partition statistics (None when unknown): a child table's rows sit in their
    #: director's chunk, so only these bounds say where their own positions are.
    position_bounds: tuple[float, float, float, float] | None = None
    #: ``[min, max]`` of each numeric column over the chunk's rows, by lower-case name
    #: (from the partition statistics; a column missing here is unknown).
    column_ranges: Mapping[str, tuple[float, float]] = field(
        default_factory=dict, compare=False, hash=False
    )

    @property
    def partition(self) -> Partition:
        """The HEALPix pixel of this chunk."""
        return Partition(self.order, self.pixel)


@dataclass(frozen=True)
class TableSnapshot:
    """One table at the version a query reads."""

    spec: TableSpec
    version: VersionRecord
    chunks: tuple[Chunk, ...]
    #: The single file of an unpartitioned table (``None`` when partitioned).
    plain_path: str | None
    #: Director index mapping this table's key (a child's: its director's) to chunks.
    key_index_path: str | None = None
    #: A child table's index of its own primary key (``sourceId``) to chunks.
    own_key_index_path: str | None = None

    @property
    def name(self) -> str:
        """Qualified name, ``schema.table``."""
        return self.spec.qualified_name

    @property
    def partitioned(self) -> bool:
        """Whether the table is split into HEALPix chunks."""
        return self.plain_path is None

    @functools.cached_property
    def folded_columns(self) -> dict[str, ColumnSpec]:
        """The columns by lower-case name (computed once per snapshot: queries look them up)."""
        return {c.name.lower(): c for c in self.spec.columns}

    @functools.cached_property
    def column_types(self) -> dict[str, str]:
        """DuckDB type of each column, by lower-case name (what name resolution binds to)."""
        return {f.name.lower(): duckdb_type(f.type) for f in self.spec.arrow_schema()}

    @property
    def margin_arcsec(self) -> float:
        """Width of the margin catalog (0 without one)."""
        return float(self.version.margin_arcsec or 0.0)

    def partition_set(self) -> PartitionSet:
        """The chunks as a :class:`PartitionSet` (index i is ``chunks[i]``)."""
        return PartitionSet(c.partition for c in self.chunks)

    def chunks_at(self, partitions: list[Partition]) -> list[Chunk]:
        """The chunks at exactly these pixels (pixels this table lacks are skipped)."""
        by_pixel = {(c.order, c.pixel): c for c in self.chunks}
        return [by_pixel[(p.order, p.pixel)] for p in partitions if (p.order, p.pixel) in by_pixel]

    def chunks_overlapping(self, ranges: np.ndarray) -> list[Chunk]:
        """Chunks whose order-29 range meets any of the half-open ``ranges`` (n x 2)."""
        parts = self.partition_set()
        if len(parts) == 0 or len(ranges) == 0:
            return []
        lo = np.asarray(ranges[:, 0], dtype=np.int64)
        hi = np.asarray(ranges[:, 1], dtype=np.int64)
        # Chunk i meets range j when start_i < hi_j and lo_j < end_i.
        first = np.searchsorted(parts.ends, lo, side="right")
        last = np.searchsorted(parts.starts, hi, side="left")
        hit = np.zeros(len(parts), dtype=bool)
        for f, la in zip(first.tolist(), last.tolist(), strict=True):
            hit[f:la] = True
        return [c for c, h in zip(self.chunks, hit.tolist(), strict=True) if h]


#: DuckDB's integer types (what a key, or a column that cannot hold NaN, is).
INTEGER_TYPES = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}
)

_DUCKDB_TYPES = {
    "int8": "TINYINT",
    "int16": "SMALLINT",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "uint8": "UTINYINT",
    "float": "FLOAT",
    "double": "DOUBLE",
    "bool": "BOOLEAN",
    "string": "VARCHAR",
    "large_string": "VARCHAR",
    "binary": "BLOB",
}


def duckdb_type(arrow_type: pa.DataType) -> str:
    """The DuckDB type name of an Arrow column type."""
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMP"
    return _DUCKDB_TYPES.get(str(arrow_type), "VARCHAR")


class CatalogSnapshot:
    """The current version of every published table, read once from the metadata store."""

    def __init__(self, tables: dict[str, TableSnapshot]) -> None:
        self._tables = tables

    @classmethod
    def load(cls, store: MetadataStore) -> CatalogSnapshot:
        """Read every table that has a published version."""
        tables: dict[str, TableSnapshot] = {}
        for record in store.tables():
            version = store.current_version(record.name)
            if version is None:
                continue
            tables[record.name.lower()] = _table_snapshot(store, record.spec, version)
        for name, table in list(tables.items()):
            director = tables.get((table.spec.director_table or "").lower())
            orphans = int(table.version.properties.get("orphans_kept") or 0)
            # Kept orphans sit in chunks of their own, which the director's index cannot name.
            if table.spec.kind == "child" and director is not None and not orphans:
                # Child rows share their director's chunk, so its index places them too.
                tables[name] = replace(table, key_index_path=director.version.index_path)
        return cls(tables)

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> CatalogSnapshot:
        """Snapshot of the data directory's metadata store."""
        store = MetadataStore.for_data_dir(data_dir)
        try:
            return cls.load(store)
        finally:
            store.close()

    def table(self, name: str) -> TableSnapshot:
        """The table ``schema.table`` (case-insensitive)."""
        try:
            return self._tables[name.lower()]
        except KeyError:
            raise NotFoundError(f"no table {name!r}") from None

    def with_tables(self, extra: dict[str, TableSnapshot]) -> CatalogSnapshot:
        """This snapshot plus ``extra`` tables (e.g. a query's uploads), keyed by name."""
        return CatalogSnapshot({**self._tables, **{k.lower(): v for k, v in extra.items()}})

    def tables(self) -> list[TableSnapshot]:
        """Every table, by name."""
        return [self._tables[k] for k in sorted(self._tables)]


def _table_snapshot(store: MetadataStore, spec: TableSpec, version: VersionRecord) -> TableSnapshot:
    if spec.kind == "plain":
        return TableSnapshot(spec, version, (), f"{version.path}/table.parquet")
    margin_files = {
        f.path for f in store.files(spec.qualified_name, version.version) if f.role == "margin"
    }
    chunks = []
    for p in store.partitions(spec.qualified_name, version.version):
        margin = None
        if version.margin_path:
            relative = p.path.split("/dataset/", 1)[-1]
            candidate = f"{version.margin_path}/dataset/{relative}"
            margin = candidate if candidate in margin_files else None
        chunks.append(
            Chunk(
                p.order,
                p.pixel,
                p.num_rows,
                p.path,
                margin,
                _position_bounds(spec, p.stats),
                _column_ranges(p.stats),
            )
        )
    chunks.sort(key=lambda c: c.partition.lo29)
    if spec.kind == "child":  # its own key's index; its foreign key uses its director's
        return TableSnapshot(
            spec, version, tuple(chunks), None, own_key_index_path=version.index_path
        )
    return TableSnapshot(spec, version, tuple(chunks), None, version.index_path)


def _column_ranges(stats: dict[str, list[Any]]) -> dict[str, tuple[float, float]]:
    """The numeric ``[min, max]`` statistics, by lower-case column name."""
    out = {}
    for name, values in stats.items():
        if len(values) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
        ):
            out[name.lower()] = (float(values[0]), float(values[1]))
    return out


def _position_bounds(
    spec: TableSpec, stats: dict[str, list[Any]]
) -> tuple[float, float, float, float] | None:
    """The partition's ra and dec [min, max] from its statistics, when both are known."""
    if spec.own_position is None:
        return None
    ra_column, dec_column = spec.own_position
    ra, dec = stats.get(ra_column), stats.get(dec_column)
    if not ra or not dec or None in (*ra, *dec):
        return None
    try:
        return float(ra[0]), float(ra[1]), float(dec[0]), float(dec[1])
    except (TypeError, ValueError):
        return None
