"""Transactional bulk ingest of a table into HATS partitions.

One ingest, start to end (``ingest_table``):

1. take the table's lock and clean up what interrupted ingests left;
2. checksum the inputs; inputs already ingested into the table are skipped,
   so re-running the same ingest adds nothing;
3. stage: read and validate every input (any format), add ``_healpix_29``;
4. check across all rows with DuckDB: unique director keys, child rows whose
   director exists;
5. lay out partitions (adaptive HEALPix orders; a child table uses its
   director's partitions so director-child joins are chunk-local);
6. one sorted pass writes the partition files, the margin rows and the
   director index;
7. checksum and fsync every file, rename the version into place, and commit
   it in the metadata store: the new version is visible at that one commit.

Appending re-partitions the published rows together with the new ones into
a new version (published files are never modified). Any failure or
interrupt before the commit leaves the published state untouched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from partition.checksums import sha256_file
from partition.director_index import write_director_index
from partition.hats_writer import (
    HEALPIX_COLUMN,
    PARTITION_COMPRESSION,
    PartitionedWriter,
    WrittenPartition,
    catalog_properties,
    row_group_rows_for,
    write_catalog_metadata,
    write_properties,
)
from partition.layout import HEALPIX_ORDER, Partition, PartitionSet, adaptive_layout
from partition.margins import margin_pairs
from partition.readers import count_rows
from partition.stage import (
    OWN_HEALPIX_COLUMN,
    ROW_COLUMN,
    SOURCE_COLUMN,
    StagedInputs,
    stage_inputs,
)
from partition.transaction import publish_dir, recover, table_dir, table_lock
from qcat.config import SETTINGS
from qcat.errors import IngestError, InputError, NotFoundError, QcatError, SchemaError
from qcat.metadata.records import (
    FileRecord,
    InputFileRecord,
    PartitionRecord,
    VersionCommit,
    VersionRecord,
)
from qcat.metadata.store import MetadataStore
from qcat.progress import progress
from qcat.schema import TableSpec

PART_COLUMN = "_qcat_part"
MARGIN_DIR = "margin"
CATALOG_DIR = "catalog"
INDEX_FILE = "index/director_index.parquet"
PLAIN_FILE = "table.parquet"
#: Options of work files that DuckDB reads back once.
_STAGE_WRITER: dict[str, Any] = {
    "compression": "lz4",
    "use_dictionary": False,
    "write_statistics": False,
}


def current_version_or_none(store: MetadataStore, name: str) -> VersionRecord | None:
    """The published version of ``name``, or ``None`` for a table never ingested."""
    try:
        return store.current_version(name)
    except NotFoundError:
        return None


def _setting(name: str) -> float | int | str:
    return SETTINGS[name].default


@dataclass(frozen=True)
class IngestOptions:
    """Tunables of one ingest; defaults come from :data:`qcat.config.SETTINGS`."""

    threshold: int = int(_setting("partition_threshold"))
    highest_order: int = int(_setting("highest_order"))
    lowest_order: int = int(_setting("lowest_order"))
    row_group_rows: int = int(_setting("row_group_rows"))
    margin_arcsec: float = float(_setting("margin_arcsec"))
    memory_limit: str = str(_setting("ingest_memory_limit"))
    index_row_group_rows: int = int(_setting("index_row_group_rows"))
    orphans: Literal["reject", "keep"] = "reject"
    #: Also index a child table's own primary key (``sourceId``); once a version has
    #: that index, later ingests and re-placements keep it (:func:`_indexed_key`).
    child_key_index: bool = False
    #: Columns a plain table's file is sorted by (then by the primary key). Sorting by a
    #: column queries filter on makes its row-group statistics skip most of the file.
    plain_order: tuple[str, ...] = ()
    batch_rows: int = 262_144
    #: Keys aggregated at once by the duplicate-key check (bounds its memory).
    key_slice_rows: int = 16_000_000
    show_progress: bool = True


@dataclass
class IngestResult:
    """What an ingest did."""

    table: str
    version: VersionRecord | None
    rows_added: int = 0
    skipped_inputs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _sql_str(value: str | Path) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _file_list(paths: Sequence[Path | str]) -> str:
    return "[" + ", ".join(_sql_str(p) for p in paths) + "]"


def _connect(tmp_dir: Path, memory_limit: str) -> duckdb.DuckDBPyConnection:
    tmp_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"SET memory_limit = {_sql_str(memory_limit)}")
    con.execute(f"SET temp_directory = {_sql_str(tmp_dir)}")
    con.execute("SET preserve_insertion_order = false")
    return con


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    """The single integer a query returns."""
    return int(con.sql(sql).fetchall()[0][0])


def _input_records(inputs: Sequence[Path]) -> list[InputFileRecord]:
    records = []
    for p in inputs:
        if not p.is_file():
            raise InputError("input file not found", path=str(p))
        try:
            records.append(InputFileRecord(str(p.resolve()), p.stat().st_size, sha256_file(p)))
        except OSError as e:
            raise InputError(f"cannot read: {e.strerror or e}", path=str(p)) from e
    return records


def _check_compatible(old: TableSpec, new: TableSpec) -> None:
    old_cols = [(c.name, c.datatype) for c in old.columns]
    new_cols = [(c.name, c.datatype) for c in new.columns]
    if old_cols != new_cols:
        raise SchemaError(
            f"table {old.qualified_name} already exists with columns "
            f"{', '.join(f'{n} {t}' for n, t in old_cols)}; the new schema has "
            f"{', '.join(f'{n} {t}' for n, t in new_cols)}"
        )


class _Build:
    """State of one ingest between staging and commit."""

    def __init__(
        self,
        data_dir: Path,
        store: MetadataStore,
        spec: TableSpec,
        options: IngestOptions,
        work: Path,
    ) -> None:
        self.data_dir = data_dir
        self.store = store
        self.spec = spec
        self.options = options
        #: Rows per row group of the files written (derived from the row width unless set).
        written = spec.arrow_schema()
        if spec.kind != "plain":
            written = written.append(pa.field(HEALPIX_COLUMN, pa.int64()))
        self.row_group_rows = row_group_rows_for(written, options.row_group_rows)
        self.work = work
        self.out = work / "out"
        self.out.mkdir(parents=True)
        self.con = _connect(work / "tmp", options.memory_limit)
        self.inputs: list[str] = []

    # -- sources ------------------------------------------------------------
    def source_sql(self, staged: StagedInputs, old: VersionRecord | None) -> str:
        """SQL of all rows of the new version: new rows plus published ones."""
        cols = ", ".join(_ident(c) for c in self.spec.column_names)
        parts = []
        has_h29 = self.spec.kind == "director"
        extra_new = f", {HEALPIX_COLUMN}" if has_h29 else ""
        own = (
            f", {OWN_HEALPIX_COLUMN}"
            if self.spec.kind == "child" and self.options.orphans == "keep"
            else ""
        )
        if staged.files:
            parts.append(
                f"SELECT {cols}{extra_new}{own}, {SOURCE_COLUMN}, {ROW_COLUMN} "
                f"FROM read_parquet({_file_list(staged.files)})"
            )
        for src, path in staged.direct:
            parts.append(
                f"SELECT {cols}, {src}::INTEGER AS {SOURCE_COLUMN}, "
                f"file_row_number::BIGINT AS {ROW_COLUMN} "
                f"FROM read_parquet({_sql_str(path)}, file_row_number = true)"
            )
        if old is not None:
            old_files = self.old_files(old)
            if old_files:
                old_own = f", {HEALPIX_COLUMN} AS {OWN_HEALPIX_COLUMN}" if own else ""
                parts.append(
                    f"SELECT {cols}{extra_new}{old_own}, -1::INTEGER AS {SOURCE_COLUMN}, "
                    f"NULL::BIGINT AS {ROW_COLUMN} FROM read_parquet({_file_list(old_files)})"
                )
        if not parts:
            raise IngestError(f"{self.spec.qualified_name}: nothing to ingest")
        return " UNION ALL ".join(parts)

    def old_files(self, old: VersionRecord) -> list[Path]:
        """Data files of a published version."""
        if self.spec.kind == "plain":
            return [self.data_dir / old.path / PLAIN_FILE]
        return [
            self.data_dir / p.path
            for p in self.store.partitions(self.spec.qualified_name, old.version)
        ]

    def where(self, src: int | None, row: int | None) -> str:
        if src is None or src < 0:
            return "the published table"
        return f"{self.inputs[src]} row {row}"

    # -- checks -------------------------------------------------------------
    def check_unique_keys(self) -> None:
        key = self.spec.director_key or (
            self.spec.primary_key[0] if len(self.spec.primary_key) == 1 else None
        )
        if key is None:
            return
        k = _ident(key)
        # The common case (no duplicates) costs lean aggregations; the places
        # of duplicates are only gathered when there are some. The keys are
        # aggregated in hash slices of about ``key_slice_rows`` rows: one
        # aggregation over 100M keys needs a 1 GiB table DuckDB cannot spill.
        rows = _scalar(self.con, "SELECT count(*) FROM src")
        slices = max(1, -(-rows // self.options.key_slice_rows))
        self.con.execute(f"CREATE TEMP TABLE duplicate_keys AS SELECT {k} AS k FROM src LIMIT 0")
        for i in range(slices):
            where = f"WHERE hash({k}) % {slices} = {i} " if slices > 1 else ""
            self.con.execute(
                f"INSERT INTO duplicate_keys SELECT {k} FROM src {where}"
                f"GROUP BY {k} HAVING count(*) > 1"
            )
        n_dup = _scalar(self.con, "SELECT count(*) FROM duplicate_keys")
        if n_dup == 0:
            return
        self.con.execute(
            f"CREATE TEMP TABLE duplicates AS SELECT {k} AS k, count(*) AS n, "
            f"list({SOURCE_COLUMN} ORDER BY {SOURCE_COLUMN}, {ROW_COLUMN})[1:3] AS srcs, "
            f"list({ROW_COLUMN} ORDER BY {SOURCE_COLUMN}, {ROW_COLUMN})[1:3] AS rows "
            f"FROM src SEMI JOIN duplicate_keys d ON {k} = d.k GROUP BY {k}"
        )
        examples = []
        for k_val, n, srcs, rows in self.con.sql(
            "SELECT * FROM duplicates ORDER BY k LIMIT 5"
        ).fetchall():
            places = "; ".join(self.where(s, r) for s, r in zip(srcs, rows, strict=False))
            examples.append(f"{key}={k_val} appears {n} times ({places})")
        raise IngestError(
            f"{self.spec.qualified_name}: {n_dup} duplicate value(s) of the key {key}: "
            + " | ".join(examples)
        )

    def child_placement(self, director_spec: TableSpec, files: list[Path]) -> None:
        """Create view ``placed``: child rows with their director's ``_healpix_29``.

        ``files`` are the director's data files the rows are placed against.
        """
        assert self.spec.director_fk_column
        ref = self.spec.director_ref_column or director_spec.director_key
        if ref is None:
            raise SchemaError(f"director table {director_spec.qualified_name} has no key column")
        fk = _ident(self.spec.director_fk_column)
        self.con.execute(
            f"CREATE TEMP TABLE director_keys AS SELECT {_ident(ref)} AS k, {HEALPIX_COLUMN} AS h "
            f"FROM read_parquet({_file_list(files)})"
        )
        self.con.execute(
            f"CREATE TEMP TABLE orphans AS SELECT s.{fk} AS k, {SOURCE_COLUMN} AS s, "
            f"{ROW_COLUMN} AS r FROM src s ANTI JOIN director_keys d ON s.{fk} = d.k"
        )
        n_orphans = _scalar(self.con, "SELECT count(*) FROM orphans")
        self.orphans = n_orphans
        if n_orphans and self.options.orphans == "reject":
            examples = "; ".join(
                f"{self.spec.director_fk_column}={k} at {self.where(s, r)}"
                for k, s, r in self.con.sql(
                    "SELECT k, s, r FROM orphans ORDER BY s, r LIMIT 5"
                ).fetchall()
            )
            raise IngestError(
                f"{self.spec.qualified_name}: {n_orphans} row(s) refer to a "
                f"{director_spec.qualified_name}.{ref} that does not exist (e.g. {examples}); "
                "use --orphans keep to keep them, placed by their own position"
            )
        cols = ", ".join(f"s.{_ident(c)}" for c in self.spec.column_names)
        h = f"COALESCE(d.h, s.{OWN_HEALPIX_COLUMN})" if self.options.orphans == "keep" else "d.h"
        # Materialised (DuckDB spills it to the temp directory): sorting straight
        # out of the join holds the join's hash table and the sort's runs at once,
        # which ran out of memory on 100M rows at a 2 GB limit.
        self.con.execute(
            f"CREATE TEMP TABLE placed AS SELECT {cols}, {h} AS {HEALPIX_COLUMN} "
            f"FROM src s LEFT JOIN director_keys d ON s.{fk} = d.k"
        )
        self.con.execute("DROP TABLE director_keys")

    # -- layout ---------------------------------------------------------------
    def director_layout(self) -> list[tuple[Partition, int]]:
        order = self.options.highest_order
        shift = 2 * (HEALPIX_ORDER - order)
        counts = self.con.sql(
            f"SELECT {HEALPIX_COLUMN} >> {shift} AS pix, count(*) AS n FROM placed GROUP BY pix"
        ).to_arrow_table()
        return adaptive_layout(
            (counts["pix"].to_numpy(), counts["n"].to_numpy()),
            order,
            threshold=self.options.threshold,
            lowest_order=self.options.lowest_order,
        )

    def child_layout(self, director_parts: list[Partition]) -> PartitionSet:
        parts = PartitionSet(director_parts)
        if self.options.orphans != "keep" or not getattr(self, "orphans", 0):
            return parts
        order = self.options.highest_order
        shift = 2 * (HEALPIX_ORDER - order)
        pix = np.array(
            [
                r[0]
                for r in self.con.sql(
                    f"SELECT DISTINCT {HEALPIX_COLUMN} >> {shift} FROM placed"
                ).fetchall()
            ],
            dtype=np.int64,
        )
        uncovered = pix[parts.locate(pix << shift) < 0]
        return PartitionSet([*director_parts, *(Partition(order, int(p)) for p in uncovered)])

    # -- writing ----------------------------------------------------------------
    def sorted_batches(self, key: str | None) -> Iterator[pa.RecordBatch]:
        cols = ", ".join(_ident(c) for c in self.spec.column_names)
        order = HEALPIX_COLUMN + (f", {_ident(key)}" if key else "")
        yield from self.con.sql(
            f"SELECT {cols}, {HEALPIX_COLUMN} FROM placed ORDER BY {order}"
        ).to_arrow_reader(self.options.batch_rows)

    def write_partitioned(
        self, parts: PartitionSet, *, margins: bool, index_key: str | None, total: int
    ) -> list[WrittenPartition]:
        schema = self.spec.arrow_schema().append(pa.field(HEALPIX_COLUMN, pa.int64()))
        writer = PartitionedWriter(
            self.out / CATALOG_DIR, parts, schema, row_group_rows=self.row_group_rows
        )
        margin_stage = index_stage = None
        key = self.spec.primary_key[0] if len(self.spec.primary_key) == 1 else None
        try:
            with progress(
                f"{self.spec.qualified_name}: writing partitions",
                total,
                enabled=self.options.show_progress,
            ) as bar:
                for batch in self.sorted_batches(key):
                    batch = batch.cast(schema) if batch.schema != schema else batch
                    h = batch.column(HEALPIX_COLUMN).to_numpy()
                    idx = parts.locate(h)
                    writer.write(batch, idx)
                    if margins:
                        margin_stage = self._stage_margins(batch, h, parts, margin_stage)
                    if index_key:
                        index_stage = self._stage_index(batch, index_key, idx, index_stage)
                    bar.advance(batch.num_rows)
            written = writer.close()
        except BaseException:
            writer.abort()
            raise
        finally:
            for w in (margin_stage, index_stage):
                if w is not None:
                    w.close()
        return written

    def _stage_margins(
        self,
        batch: pa.RecordBatch,
        h: np.ndarray,
        parts: PartitionSet,
        writer: pq.ParquetWriter | None,
    ) -> pq.ParquetWriter | None:
        assert self.spec.ra_column and self.spec.dec_column
        ra = batch.column(self.spec.ra_column).to_numpy(zero_copy_only=False)
        dec = batch.column(self.spec.dec_column).to_numpy(zero_copy_only=False)
        rows, pidx = margin_pairs(ra, dec, h, parts, self.options.margin_arcsec)
        if len(rows) == 0:
            return writer
        taken = batch.take(pa.array(rows))
        taken = taken.append_column(PART_COLUMN, pa.array(pidx.astype(np.int32)))
        if writer is None:
            writer = pq.ParquetWriter(
                self.work / "margin-stage.parquet", taken.schema, **_STAGE_WRITER
            )
        writer.write_batch(taken)
        return writer

    def _stage_index(
        self,
        batch: pa.RecordBatch,
        key: str,
        idx: np.ndarray,
        writer: pq.ParquetWriter | None,
    ) -> pq.ParquetWriter:
        b = pa.record_batch(
            {
                key: batch.column(key),
                PART_COLUMN: pa.array(idx.astype(np.int32)),
                HEALPIX_COLUMN: batch.column(HEALPIX_COLUMN),
            }
        )
        if writer is None:
            writer = pq.ParquetWriter(self.work / "index-stage.parquet", b.schema, **_STAGE_WRITER)
        writer.write_batch(b)
        return writer

    def write_margins(self, parts: PartitionSet) -> list[WrittenPartition]:
        stage = self.work / "margin-stage.parquet"
        schema = self.spec.arrow_schema().append(pa.field(HEALPIX_COLUMN, pa.int64()))
        writer = PartitionedWriter(
            self.out / MARGIN_DIR, parts, schema, row_group_rows=self.row_group_rows
        )
        if stage.exists():
            cols = ", ".join(_ident(c) for c in [*self.spec.column_names, HEALPIX_COLUMN])
            reader = self.con.sql(
                f"SELECT {cols}, {PART_COLUMN} FROM read_parquet({_sql_str(stage)}) "
                f"ORDER BY {PART_COLUMN}, {HEALPIX_COLUMN}"
            ).to_arrow_reader(self.options.batch_rows)
            for batch in reader:
                part = batch.column(PART_COLUMN).to_numpy()
                writer.write(batch.drop_columns([PART_COLUMN]).cast(schema), part)
        return writer.close()

    def write_index(self, parts: PartitionSet, key: str) -> None:
        stage = self.work / "index-stage.parquet"

        def batches() -> Iterator[pa.RecordBatch]:
            reader = self.con.sql(
                f"SELECT {_ident(key)}, {PART_COLUMN}, {HEALPIX_COLUMN} "
                f"FROM read_parquet({_sql_str(stage)}) ORDER BY {_ident(key)}"
            ).to_arrow_reader(self.options.batch_rows)
            for b in reader:
                order, pixel = parts.orders_and_pixels(b.column(PART_COLUMN).to_numpy())
                yield pa.record_batch(
                    {
                        key: b.column(key),
                        "Norder": order,
                        "Npix": pixel,
                        HEALPIX_COLUMN: b.column(HEALPIX_COLUMN),
                    }
                )

        path = self.out / INDEX_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        write_director_index(
            batches(), path, key_column=key, row_group_rows=self.options.index_row_group_rows
        )

    def write_plain(self) -> int:
        cols = ", ".join(_ident(c) for c in self.spec.column_names)
        known = {c.lower() for c in self.spec.column_names}
        unknown = [c for c in self.options.plain_order if c.lower() not in known]
        if unknown:
            raise SchemaError(
                f"{self.spec.qualified_name}: no column {', '.join(map(repr, unknown))} to sort by"
            )
        keys = dict.fromkeys([*self.options.plain_order, *self.spec.primary_key])
        order = " ORDER BY " + ", ".join(_ident(k) for k in keys) if keys else ""
        path = self.out / PLAIN_FILE
        self.con.execute(
            f"COPY (SELECT {cols} FROM src{order}) TO {_sql_str(path)} "
            f"(FORMAT parquet, COMPRESSION {PARTITION_COMPRESSION}, "
            f"ROW_GROUP_SIZE {self.row_group_rows})"
        )
        return int(pq.read_metadata(path).num_rows)


def _file_records(version_dir: Path) -> list[FileRecord]:
    """Size and checksum of every file of a version, paths relative to it."""
    records = []
    for p in sorted(version_dir.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(version_dir).as_posix()
        role = (
            "data"
            if rel.startswith(f"{CATALOG_DIR}/dataset/Norder=") or rel == PLAIN_FILE
            else "margin"
            if rel.startswith(f"{MARGIN_DIR}/dataset/Norder=")
            else "index"
            if rel.startswith("index/")
            else "metadata"
        )
        records.append(
            FileRecord(
                rel,
                p.stat().st_size,
                sha256_file(p, sync=True),
                role,
            )
        )
    return records


def ingest_table(
    data_dir: Path,
    spec: TableSpec,
    inputs: Sequence[Path],
    options: IngestOptions | None = None,
) -> IngestResult:
    """Ingest ``inputs`` into ``spec``'s table as one transaction.

    Appending to a director table also re-places its child tables on the
    new partitions; the director and its children are committed together.
    """
    opts = options or IngestOptions()
    if opts.child_key_index:
        child_key(spec)  # refuse before anything is read
    data_dir.mkdir(parents=True, exist_ok=True)
    store = MetadataStore.for_data_dir(data_dir)
    name = spec.qualified_name
    result = IngestResult(table=name, version=None)
    try:
        children = _child_specs(store, name) if spec.kind == "director" else []
        keys = [name.lower(), *(c.qualified_name.lower() for c in children)]
        with contextlib.ExitStack() as held:
            for key in keys:
                held.enter_context(table_lock(data_dir, key))
            recover(data_dir, store, holding=keys)
            old = current_version_or_none(store, name)
            if old is not None:
                old_spec = store.table(name).spec
                _check_compatible(old_spec, spec)
                name = old_spec.qualified_name
            fresh, fresh_paths = _new_inputs(store, name, old, inputs, result)
            # Asked to index a published child's own key: a new version of the same rows.
            indexing = opts.child_key_index and old is not None and old.index_path is None
            if not fresh and not indexing:
                result.version = old
                result.notes.append("every input was ingested before: nothing to do")
                return result
            director_spec: TableSpec | None = None
            director_parts: list[PartitionRecord] = []
            if spec.kind == "child":
                assert spec.director_table
                if current_version_or_none(store, spec.director_table) is None:
                    raise IngestError(
                        f"{name} is a child of {spec.director_table}, which has no data yet: "
                        f"ingest {spec.director_table} first"
                    )
                director_spec = store.table(spec.director_table).spec
                director_parts = store.partitions(director_spec.qualified_name)
            run = _Transaction(data_dir, store)
            if not fresh:
                assert old is not None
                opts = replace(_rebuild_options(opts, old), child_key_index=True)
                result.notes.append(f"{name}: its own key indexed (no new input; same rows)")
            try:
                main = run.build(
                    name, spec, opts, fresh, fresh_paths, old, result, director_spec, director_parts
                )
                if old is not None:
                    for child in children:
                        child_old = current_version_or_none(store, child.qualified_name)
                        if child_old is None:
                            continue
                        run.build(
                            child.qualified_name,
                            store.table(child.qualified_name).spec,
                            _rebuild_options(opts, child_old),
                            [],
                            [],
                            child_old,
                            IngestResult(table=child.qualified_name, version=None),
                            spec,
                            main.commit.partitions,
                        )
                        result.notes.append(f"re-partitioned child table {child.qualified_name}")
                result.version = store.commit_versions([p.commit for p in run.pending])[0]
            except BaseException as e:
                run.abort(e)
                if isinstance(e, OSError) and not isinstance(e, QcatError):
                    raise IngestError(
                        f"{name}: write failed at {e.filename or data_dir}: {e.strerror or e}; "
                        "the published data is unchanged"
                    ) from e
                raise
            recover(data_dir, store, holding=keys)
    finally:
        store.close()
    return result


def _child_specs(store: MetadataStore, director: str) -> list[TableSpec]:
    """Published child tables placed on ``director``'s partitions."""
    return [
        t.spec
        for t in store.tables()
        if t.spec.director_table and t.spec.director_table.lower() == director.lower()
    ]


def _new_inputs(
    store: MetadataStore,
    name: str,
    old: VersionRecord | None,
    inputs: Sequence[Path],
    result: IngestResult,
) -> tuple[list[InputFileRecord], list[Path]]:
    """Inputs not ingested into ``name`` before (by checksum); the rest go to ``result``."""
    done = store.committed_input_checksums(name) if old is not None else set()
    fresh: list[InputFileRecord] = []
    fresh_paths: list[Path] = []
    for rec, path in zip(_input_records(inputs), inputs, strict=True):
        if rec.sha256 in done or any(f.sha256 == rec.sha256 for f in fresh):
            result.skipped_inputs.append(str(path))
        else:
            fresh.append(rec)
            fresh_paths.append(path)
    return fresh, fresh_paths


def _rebuild_options(opts: IngestOptions, child: VersionRecord) -> IngestOptions:
    """Options to re-place a child table: its own orphan policy and row groups."""
    props = child.properties
    kept = props.get("orphans") == "keep" or bool(props.get("orphans_kept"))
    return replace(
        opts,
        orphans="keep" if kept else "reject",
        row_group_rows=int(props.get("row_group_rows", opts.row_group_rows)),
    )


@dataclass(frozen=True)
class _Pending:
    """A version built and renamed into place, waiting for its commit."""

    dest: Path
    commit: VersionCommit


class _Transaction:
    """The versions one ingest builds (a table, and the children it re-places).

    Each version is built in its own staging area under its own ingest
    record; on any failure all of them are removed and marked failed.
    """

    def __init__(self, data_dir: Path, store: MetadataStore) -> None:
        self.data_dir = data_dir
        self.store = store
        self.started: list[tuple[int, Path]] = []
        self.pending: list[_Pending] = []

    def build(
        self,
        name: str,
        spec: TableSpec,
        opts: IngestOptions,
        fresh: list[InputFileRecord],
        paths: list[Path],
        old: VersionRecord | None,
        result: IngestResult,
        director_spec: TableSpec | None,
        director_parts: list[PartitionRecord],
    ) -> _Pending:
        work_rel = f"staging/{name.lower()}-{time.time_ns()}"
        work = self.data_dir / work_rel
        ingest_id = self.store.begin_ingest(
            name, "append" if old else "ingest", fresh, work_rel, os.getpid()
        )
        self.started.append((ingest_id, work))
        pending = _build_version(
            self.data_dir,
            self.store,
            spec,
            opts,
            work,
            ingest_id,
            paths,
            old,
            director_spec,
            director_parts,
            result,
        )
        self.pending.append(pending)
        shutil.rmtree(work, ignore_errors=True)
        return pending

    def abort(self, error: BaseException) -> None:
        """Remove everything built and record every ingest as failed."""
        message = "interrupted" if isinstance(error, KeyboardInterrupt) else str(error)
        for p in self.pending:
            shutil.rmtree(p.dest, ignore_errors=True)
        for ingest_id, work in self.started:
            shutil.rmtree(work, ignore_errors=True)
            self.store.fail_ingest(ingest_id, message or type(error).__name__)
            self.store.mark_cleaned(ingest_id)


def _indexed_key(spec: TableSpec, opts: IngestOptions, old: VersionRecord | None) -> str | None:
    """The column a partitioned table's key index maps to chunks: a director's key,
    or a child table's own primary key (``sourceId``) when asked for, now or by an
    earlier version (like a database index, it stays once made).

    A child's rows are found through its director's index by their foreign
    key; its own key is spread over every chunk and, without an index of its
    own, a lookup by it reads the key column of the whole table. The index
    costs a sort of the key at ingest, so it is the operator's choice.
    """
    if spec.kind == "director":
        return spec.director_key
    wanted = opts.child_key_index or (old is not None and old.index_path is not None)
    if spec.kind == "child" and wanted:
        return child_key(spec)
    return None


def child_key(spec: TableSpec) -> str:
    """The child table's one-column primary key, which its own index maps to chunks."""
    if spec.kind != "child" or len(spec.primary_key) != 1:
        raise SchemaError(
            f"{spec.qualified_name}: a key index of its own needs a child table with a "
            f"one-column primary key (this is a {spec.kind} table with primary key "
            f"{', '.join(spec.primary_key) or 'none'}); a director's key is always indexed"
        )
    return spec.primary_key[0]


def _build_version(
    data_dir: Path,
    store: MetadataStore,
    spec: TableSpec,
    opts: IngestOptions,
    work: Path,
    ingest_id: int,
    inputs: list[Path],
    old: VersionRecord | None,
    director_spec: TableSpec | None,
    director_parts: list[PartitionRecord],
    result: IngestResult,
) -> _Pending:
    """Build a version of ``spec``'s table and rename it into place, uncommitted."""
    build = _Build(data_dir, store, spec, opts, work)
    build.inputs = [str(p) for p in inputs]
    own = spec.own_position if spec.kind == "child" and opts.orphans == "keep" else None
    if spec.kind == "child" and opts.orphans == "keep" and own is None:
        raise SchemaError(
            f"{spec.qualified_name}: --orphans keep needs the table's own position columns "
            "(UCDs pos.eq.ra / pos.eq.dec)"
        )
    counts = [count_rows(p) for p in inputs]
    total_in = None if any(c is None for c in counts) else sum(c or 0 for c in counts)
    with progress(
        f"{spec.qualified_name}: reading inputs", total_in, enabled=opts.show_progress
    ) as bar:
        staged = stage_inputs(
            inputs, spec, work / "stage", bar, own_position=own, batch_rows=opts.batch_rows
        )
    result.rows_added = staged.rows
    build.con.execute(f"CREATE TEMP VIEW src AS {build.source_sql(staged, old)}")
    build.check_unique_keys()
    total = _scalar(build.con, "SELECT count(*) FROM src")

    partitions: list[WrittenPartition] = []
    margin_written: list[WrittenPartition] = []
    index_path = margin_path = None
    version_rel = (table_dir(data_dir, spec.qualified_name.lower()) / work.name).relative_to(
        data_dir
    )
    if spec.kind == "plain":
        build.write_plain()
    else:
        if spec.kind == "director":
            build.con.execute("CREATE TEMP VIEW placed AS SELECT * FROM src")
            layout = build.director_layout()
            parts = PartitionSet(p for p, _ in layout)
        else:
            assert director_spec is not None
            build.child_placement(director_spec, [data_dir / p.path for p in director_parts])
            parts = build.child_layout([Partition(p.order, p.pixel) for p in director_parts])
        margins = spec.kind == "director" and opts.margin_arcsec > 0
        index_key = _indexed_key(spec, opts, old)
        partitions = build.write_partitioned(
            parts, margins=margins, index_key=index_key, total=total
        )
        schema = spec.arrow_schema().append(pa.field(HEALPIX_COLUMN, pa.int64()))
        catalog = build.out / CATALOG_DIR
        write_catalog_metadata(catalog, schema, partitions)
        ra, dec = (
            (spec.ra_column, spec.dec_column)
            if spec.kind == "director"
            else (spec.own_position or (None, None))
        )
        write_properties(
            catalog,
            catalog_properties(
                name=spec.qualified_name,
                catalog_type="object" if spec.kind == "director" else "source",
                ra_column=ra,
                dec_column=dec,
                total_rows=total,
                max_rows=max((w.num_rows for w in partitions), default=0),
                extra={"qcat_director_table": spec.director_table} if spec.director_table else None,
            ),
        )
        if margins:
            margin_written = build.write_margins(parts)
            margin = build.out / MARGIN_DIR
            write_catalog_metadata(margin, schema, margin_written)
            write_properties(
                margin,
                catalog_properties(
                    name=f"{spec.qualified_name}_margin",
                    catalog_type="margin",
                    ra_column=spec.ra_column,
                    dec_column=spec.dec_column,
                    total_rows=sum(w.num_rows for w in margin_written),
                    max_rows=max((w.num_rows for w in margin_written), default=0),
                    extra={
                        "hats_primary_table_url": f"../{CATALOG_DIR}",
                        "hats_margin_threshold": opts.margin_arcsec,
                    },
                ),
            )
            margin_path = (version_rel / MARGIN_DIR).as_posix()
        if index_key:
            build.write_index(parts, index_key)
            index_path = (version_rel / INDEX_FILE).as_posix()
    build.con.close()

    dest = data_dir / version_rel
    final_partitions = [
        PartitionRecord(
            w.partition.order,
            w.partition.pixel,
            w.num_rows,
            (version_rel / w.path.relative_to(build.out)).as_posix(),
            w.stats,
        )
        for w in partitions
    ]
    files = [
        FileRecord((version_rel / f.path).as_posix(), f.size, f.sha256, f.role)
        for f in _file_records(build.out)
    ]
    publish_dir(build.out, dest)
    return _Pending(
        dest,
        VersionCommit(
            ingest_id,
            spec,
            path=version_rel.as_posix(),
            num_rows=total,
            partitions=final_partitions,
            files=files,
            margin_path=margin_path,
            margin_arcsec=opts.margin_arcsec if margin_path else None,
            index_path=index_path,
            properties={
                "partition_threshold": opts.threshold,
                "highest_order": opts.highest_order,
                "row_group_rows": build.row_group_rows,
                "orphans": opts.orphans,
                "orphans_kept": getattr(build, "orphans", 0) if opts.orphans == "keep" else 0,
            },
            expected_current=old.version if old else 0,
        ),
    )
