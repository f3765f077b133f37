"""Writing HATS catalog directories.

A HATS catalog (IVOA Note "HATS" 1.0) is::

    hats.properties            catalog properties (java properties syntax)
    properties                 the same, the name older readers look for
    partition_info.csv         Norder,Npix of every partition
    dataset/_common_metadata   Parquet schema of the partition files
    dataset/_metadata          schema plus every file's row-group footers
    dataset/Norder=k/Dir=d/Npix=n.parquet

:class:`PartitionedWriter` turns a stream of rows that arrive grouped by
partition (in ``_healpix_29`` order for the main catalog, by target partition
for margins) into one Parquet file per partition, with row groups of a fixed
size, so at most one partition file is open at a time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from partition.layout import Partition, PartitionSet

HEALPIX_COLUMN = "_healpix_29"

#: Parquet codec of plain table files, and of partition columns that compress.
PARTITION_COMPRESSION = "zstd"
#: Codec of partition columns zstd barely shrinks (noisy measurements): zstd
#: saves 5-19% on them but decodes about twice as slowly as snappy, which every
#: scan and lookup pays (docs/ingest.md, "Storage settings").
INCOMPRESSIBLE_CODEC = "snappy"
#: zstd must shrink a column's first row group at least this much to be used.
ZSTD_MIN_RATIO = 1.25
#: Data page size in bytes (pyarrow's default is 1 MB). With Parquet prefetching
#: off (the workers' setting), DuckDB reads only the pages a scan needs, so a
#: lookup or small cone decodes 64 KB pages of each column instead of whole
#: column chunks: 1.1-1.4 ms less per lookup, scans within 7%, writing as fast
#: (docs/ingest.md, "Storage settings").
DATA_PAGE_BYTES = 64 * 1024
#: Column data (uncompressed) per row group when no row count is asked for. A
#: lookup or small cone decodes one row group of every column it selects, so a
#: wide table gets short groups (the demo Object: about 20,000 rows) and a narrow
#: one long groups (Source: about 49,000); scans lose ~10% against 100,000-row
#: groups, lookups gain 4-5 ms (docs/ingest.md, "Storage settings").
ROW_GROUP_BYTES = 4 * 1024 * 1024
#: The derived row count stays within these bounds.
ROW_GROUP_ROWS_RANGE = (8_192, 100_000)
#: Assumed size of one variable-width value (strings: short names and flags).
VARIABLE_VALUE_BYTES = 16


def row_group_rows_for(schema: pa.Schema, rows: int = 0) -> int:
    """``rows`` when positive, else the rows of about :data:`ROW_GROUP_BYTES` of
    ``schema``'s columns (within :data:`ROW_GROUP_ROWS_RANGE`)."""
    if rows < 0:
        raise ValueError(f"row_group_rows must be 0 (derived) or positive, got {rows}")
    if rows > 0:
        return rows
    width = sum(_value_bytes(f.type) for f in schema)
    low, high = ROW_GROUP_ROWS_RANGE
    return min(max(ROW_GROUP_BYTES // max(width, 1), low), high)


def _value_bytes(kind: pa.DataType) -> int:
    if pa.types.is_boolean(kind):
        return 1
    try:
        return max(kind.bit_width // 8, 1)
    except ValueError:  # variable width
        return VARIABLE_VALUE_BYTES


@dataclass
class WrittenPartition:
    """A partition file as written: where, how many rows, per-column min/max."""

    partition: Partition
    path: Path
    num_rows: int
    stats: dict[str, list[Any]] = field(default_factory=dict)


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    if isinstance(v, np.generic):
        return v.item()
    return v


def footer_stats(meta: pq.FileMetaData) -> dict[str, list[Any]]:
    """Column ``[min, max]`` over all row groups of a Parquet footer.

    Columns whose statistics are missing in any row group (or are all NULL)
    are left out: a missing entry means "unknown", never "empty".
    """
    out: dict[str, list[Any]] = {}
    schema = meta.schema
    for ci in range(meta.num_columns):
        name = schema.column(ci).name
        lo: Any = None
        hi: Any = None
        known = True
        for rg in range(meta.num_row_groups):
            st = meta.row_group(rg).column(ci).statistics
            if st is None or not st.has_min_max:
                if st is not None and st.null_count == meta.row_group(rg).num_rows:
                    continue  # all NULL in this group: contributes nothing
                known = False
                break
            lo = st.min if lo is None else min(lo, st.min)
            hi = st.max if hi is None else max(hi, st.max)
        if known and lo is not None:
            out[name] = [_jsonable(lo), _jsonable(hi)]
    return out


def dictionary_columns(schema: pa.Schema, sample: pa.Table | None = None) -> list[str]:
    """Columns worth dictionary encoding: strings, booleans, narrow integers, and
    wider numbers that take few distinct values in ``sample`` (the file's first rows).

    Measured on the demo catalog, dictionary-encoding every column made writing
    six times slower while noisy floats and unique ids gained nothing from it.
    But a float flag such as ``refExtendedness`` (0, 1 or null) written plain
    made DuckDB's GROUP BY on it 1.5x slower than over a dictionary-encoded
    copy, so numbers repeating within the sample are encoded too.
    """
    out = []
    for f in schema:
        if (
            pa.types.is_string(f.type)
            or pa.types.is_large_string(f.type)
            or pa.types.is_boolean(f.type)
            or (pa.types.is_integer(f.type) and f.type.bit_width <= 16)
        ):
            out.append(f.name)
        elif sample is not None and (pa.types.is_integer(f.type) or pa.types.is_floating(f.type)):
            values = sample.column(f.name).slice(0, DICTIONARY_SAMPLE_ROWS)
            distinct = pc.count_distinct(values, mode="all").as_py()
            if distinct <= max(1, len(values) // DICTIONARY_REPEATS):
                out.append(f.name)
    return out


def column_codecs(sample: pa.Table) -> dict[str, str]:
    """A codec per column: zstd where it shrinks ``sample`` (the file's first row
    group) by :data:`ZSTD_MIN_RATIO` or more, else :data:`INCOMPRESSIBLE_CODEC`.

    Ids, sorted indexes, times, flags and strings compress 2-14x and keep
    zstd; fluxes, errors and coordinates compress 1.05-1.19x and decode at
    snappy's speed instead.
    """
    codecs = {}
    for name in sample.column_names:
        values = sample.column(name).slice(0, DICTIONARY_SAMPLE_ROWS).combine_chunks()
        codecs[name] = PARTITION_COMPRESSION
        if pa.types.is_floating(values.type) and len(values) > 0:
            width = values.type.bit_width // 8
            buffer = values.buffers()[1]
            assert buffer is not None
            data = buffer.slice(values.offset * width, len(values) * width)
            packed = pa.compress(data, codec=PARTITION_COMPRESSION, asbytes=True)
            if data.size < ZSTD_MIN_RATIO * len(packed):
                codecs[name] = INCOMPRESSIBLE_CODEC
    return codecs


#: Rows of a file's first batch :func:`dictionary_columns` looks at, and how many
#: times on average a number must repeat in them to be dictionary-encoded.
DICTIONARY_SAMPLE_ROWS = 16_384
DICTIONARY_REPEATS = 100


class PartitionedWriter:
    """Write rows grouped by partition into ``dataset/Norder=/Dir=/Npix=.parquet`` files.

    Call :meth:`write` with batches whose partition indices (into
    ``partitions``) never decrease across the whole stream; then
    :meth:`close`. Rows of a partition are written in the order they arrive.
    """

    def __init__(
        self,
        catalog_dir: Path,
        partitions: PartitionSet,
        schema: pa.Schema,
        *,
        row_group_rows: int = 100_000,
        compression: str | None = None,
    ) -> None:
        self.catalog_dir = catalog_dir
        self.dataset_dir = catalog_dir / "dataset"
        self.partitions = partitions
        self.schema = schema
        self.row_group_rows = row_group_rows
        self.compression = compression
        self.written: list[WrittenPartition] = []
        self._current: int = -1
        self._writer: pq.ParquetWriter | None = None
        self._file_open = False
        self._buffer: list[pa.RecordBatch] = []
        self._buffered = 0
        self._rows_in_file = 0

    def write(self, batch: pa.RecordBatch, part_index: np.ndarray) -> None:
        """Append ``batch``; ``part_index[i]`` is the partition of row ``i``."""
        if batch.num_rows == 0:
            return
        idx = np.asarray(part_index)
        if idx[0] < self._current or np.any(idx[1:] < idx[:-1]):
            raise ValueError("rows must arrive grouped by non-decreasing partition")
        if idx[0] < 0:
            raise ValueError("a row lies outside every partition")
        cuts = np.flatnonzero(idx[1:] != idx[:-1]) + 1
        starts = np.concatenate(([0], cuts))
        ends = np.concatenate((cuts, [len(idx)]))
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            p = int(idx[s])
            if p != self._current:
                self._finish_file()
                self._open(p)
            self._append(batch.slice(s, e - s))

    def close(self) -> list[WrittenPartition]:
        """Finish the last file; return every partition written, in order."""
        self._finish_file()
        return self.written

    def abort(self) -> None:
        """Close an open file without recording it (the caller discards the directory)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -- internals --------------------------------------------------------
    def _open(self, p: int) -> None:
        # The file itself is created with its first row group, whose rows pick
        # the columns to dictionary-encode.
        self._current = p
        self._rows_in_file = 0
        self._file_open = True

    def _new_writer(self, first: pa.Table) -> pq.ParquetWriter:
        path = self.dataset_dir / self.partitions[self._current].path
        path.parent.mkdir(parents=True, exist_ok=True)
        return pq.ParquetWriter(
            path,
            self.schema,
            compression=self.compression or column_codecs(first),
            data_page_size=DATA_PAGE_BYTES,
            use_dictionary=dictionary_columns(self.schema, first),
            write_statistics=True,
        )

    def _append(self, batch: pa.RecordBatch) -> None:
        self._buffer.append(batch)
        self._buffered += batch.num_rows
        while self._buffered >= self.row_group_rows:
            self._flush(self.row_group_rows)

    def _flush(self, rows: int) -> None:
        table = pa.Table.from_batches(self._buffer, schema=self.schema)
        head, rest = table.slice(0, rows), table.slice(rows)
        if self._writer is None:
            self._writer = self._new_writer(head)
        self._writer.write_table(head, row_group_size=rows)
        self._rows_in_file += head.num_rows
        self._buffer = rest.to_batches()
        self._buffered = rest.num_rows

    def _finish_file(self) -> None:
        if not self._file_open:
            return
        self._file_open = False
        if self._buffered:
            self._flush(self._buffered)
        assert self._writer is not None  # a file is opened for rows, so it has some
        self._writer.close()
        self._writer = None
        part = self.partitions[self._current]
        path = self.dataset_dir / part.path
        meta = pq.read_metadata(path)
        self.written.append(WrittenPartition(part, path, self._rows_in_file, footer_stats(meta)))


def write_properties(catalog_dir: Path, properties: Mapping[str, Any]) -> None:
    """Write ``hats.properties`` and its twin ``properties`` (java properties syntax)."""
    lines = ["#HATS catalog"]
    for key, value in properties.items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            value = " ".join(str(v) for v in value)
        lines.append(f"{key}={value}")
    text = "\n".join(lines) + "\n"
    for name in ("hats.properties", "properties"):
        (catalog_dir / name).write_text(text)


def read_properties(catalog_dir: Path) -> dict[str, str]:
    """Read ``hats.properties`` (or ``properties``) into a dict of strings."""
    for name in ("hats.properties", "properties"):
        p = catalog_dir / name
        if p.is_file():
            out: dict[str, str] = {}
            for line in p.read_text().splitlines():
                line = line.strip()
                if not line or line.startswith(("#", "!")):
                    continue
                key, _, value = line.partition("=")
                out[key.strip()] = value.strip()
            return out
    raise FileNotFoundError(f"{catalog_dir}: no hats.properties file")


def write_catalog_metadata(
    catalog_dir: Path,
    schema: pa.Schema,
    written: Iterable[WrittenPartition],
) -> None:
    """Write ``partition_info.csv``, ``dataset/_common_metadata`` and ``dataset/_metadata``."""
    written = list(written)
    dataset = catalog_dir / "dataset"
    dataset.mkdir(parents=True, exist_ok=True)
    rows = ["Norder,Npix"] + [f"{w.partition.order},{w.partition.pixel}" for w in written]
    (catalog_dir / "partition_info.csv").write_text("\n".join(rows) + "\n")
    pq.write_metadata(schema, dataset / "_common_metadata")
    collector = []
    for w in written:
        meta = pq.read_metadata(w.path)
        meta.set_file_path(w.path.relative_to(dataset).as_posix())
        collector.append(meta)
    pq.write_metadata(schema, dataset / "_metadata", metadata_collector=collector)


def catalog_properties(
    *,
    name: str,
    catalog_type: str,
    ra_column: str | None,
    dec_column: str | None,
    total_rows: int,
    max_rows: int,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The standard HATS properties of a catalog qcat writes."""
    props: dict[str, Any] = {
        "obs_collection": name,
        "dataproduct_type": catalog_type,
        "hats_nrows": total_rows,
        "hats_col_ra": ra_column,
        "hats_col_dec": dec_column,
        "hats_col_healpix": HEALPIX_COLUMN,
        "hats_col_healpix_order": 29,
        "hats_max_rows": max_rows,
        "hats_npix_suffix": ".parquet",
        "hats_version": "v1.0",
        "hats_builder": "qcat",
        "hats_creation_date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M%Z"),
    }
    if extra:
        props.update(extra)
    return props
