"""Director index: director key -> HATS partition, as one sorted Parquet file.

A query such as ``WHERE objectId = 123`` or ``objectId IN (...)`` must reach
the one chunk holding each key instead of scanning the table. The index is a
Parquet file of ``(key, Norder, Npix)`` rows sorted by key, cut into small row
groups of exactly ``row_group_rows`` rows (the last may be shorter). Because
the keys are unique and sorted, the row groups' key ranges are disjoint and
ascending, so the footer's min/max statistics are a sorted list of ranges:
finding the row group of a key is one binary search over the footer, and a
lookup reads only the row groups that hold wanted keys, each once.

The writer streams (it holds at most one row group plus one input batch), and
the reader keeps only the footer in memory, so the index scales to billions of
keys. The file is plain Parquet: pyarrow, DuckDB and HATS tools read it as is.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from partition.layout import HEALPIX_ORDER, Partition
from qcat.errors import ConfigError, IngestError, InputError, IntegrityError

ORDER_COLUMN = "Norder"
PIXEL_COLUMN = "Npix"
INDEX_COLUMNS = ("key", ORDER_COLUMN, PIXEL_COLUMN)
"""Index columns in file order. The first is the key's role: the file stores
the key under the director table's own column name (see ``KEY_COLUMN_METADATA``);
the partition columns are stored under these HATS names."""

HEALPIX_COLUMN = "_healpix_29"
"""Optional fourth column (format 2): the key's own order-29 HEALPix index.
Partition files are sorted by it, so a lookup that knows it can add
``_healpix_29 = h`` and read one row group of the partition instead of
scanning the key column of the whole file. Child rows carry their director's
index, so the same holds for a child table's rows of that key."""

KEY_COLUMN_METADATA = b"qcat.director_index.key_column"
FORMAT_METADATA = b"qcat.director_index.format"
FORMAT_VERSION = b"1"  # key, Norder, Npix
FORMAT_VERSION_WITH_HEALPIX = b"2"  # ... and _healpix_29

MAX_ROW_GROUP_ROWS = 64 * 1024 * 1024  # pyarrow's own cap on a row group's rows
# Parquet writers drop (not truncate) min/max statistics of long strings: pyarrow
# above 4096 bytes. Lookups need those statistics, so keys stay well below that.
MAX_STRING_KEY_BYTES = 1024

INT64_MIN, INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)


@dataclass(frozen=True)
class IndexStats:
    """Summary of a written director index."""

    rows: int
    row_groups: int
    min_key: object
    max_key: object
    key_column: str


@dataclass(frozen=True)
class KeyLocation:
    """Where a key's row lives: its partition and, in format 2, its HEALPix index."""

    partition: Partition
    healpix_29: int | None


# ---------------------------------------------------------------------------
# writing


def write_director_index(
    batches: Iterable[pa.RecordBatch] | pa.RecordBatchReader,
    path: Path,
    *,
    key_column: str,
    row_group_rows: int = 16_384,
) -> IndexStats:
    """Write the director index of ``batches`` to ``path``.

    ``batches`` hold the columns ``key_column`` (integer or string),
    ``Norder`` and ``Npix``, already sorted by key ascending, and optionally
    ``_healpix_29`` (then kept, and checked to lie in the row's partition);
    other columns are ignored. Keys must be unique and strictly ascending across all
    batches, else :class:`IngestError` names the first offending key. The
    file gets exactly ``row_group_rows`` rows per row group (the last may be
    shorter) whatever the batch sizes, with statistics on. It is written
    beside ``path`` and renamed into place, so a failed write leaves any
    earlier file untouched.
    """
    if isinstance(row_group_rows, bool) or not 1 <= row_group_rows <= MAX_ROW_GROUP_ROWS:
        raise ConfigError(
            f"row_group_rows must be between 1 and {MAX_ROW_GROUP_ROWS}, got {row_group_rows!r}"
        )
    path = Path(path)
    input_schema, source = _schema_and_batches(batches)
    schema = _index_schema(input_schema, key_column)
    ascending = _AscendingKeys(key_column)
    regrouper = _RowGroupBuffer(schema, row_group_rows)
    row_groups = 0
    # The writer closes (footer written) before the staging file is renamed.
    with (
        _replace_on_success(path) as staging,
        pq.ParquetWriter(staging, schema, **_writer_options(schema)) as writer,
    ):
        for batch in source:
            rows = _index_rows(batch, schema, key_column, first_row=ascending.rows)
            ascending.check(rows.column(0))
            for table in regrouper.push(rows):
                writer.write_table(table, row_group_size=row_group_rows)
                row_groups += 1
        tail = regrouper.flush()
        if tail is not None:
            writer.write_table(tail, row_group_size=row_group_rows)
            row_groups += 1
    return IndexStats(
        rows=ascending.rows,
        row_groups=row_groups,
        min_key=ascending.first,
        max_key=ascending.last,
        key_column=key_column,
    )


def _schema_and_batches(
    batches: Iterable[pa.RecordBatch] | pa.RecordBatchReader,
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The input schema (from the reader, else the first batch) and all batches."""
    if isinstance(batches, pa.RecordBatchReader):
        return batches.schema, iter(batches)
    source = iter(batches)
    first = next(source, None)
    if first is None:
        raise IngestError(
            "no input batches, so the key type is unknown; "
            "pass a pyarrow.RecordBatchReader to write an empty director index"
        )
    if not isinstance(first, pa.RecordBatch):
        raise IngestError(
            f"director index input must be pyarrow RecordBatches, got {type(first).__name__}"
        )
    return first.schema, chain([first], source)


def _index_schema(input_schema: pa.Schema, key_column: str) -> pa.Schema:
    """File schema: the key under its own name, then Norder (uint8), Npix (int64)
    and, when the input has it, _healpix_29 (int64)."""
    if key_column in (ORDER_COLUMN, PIXEL_COLUMN, HEALPIX_COLUMN):
        raise IngestError(f"key_column {key_column!r} clashes with the index's partition columns")
    for name in (key_column, ORDER_COLUMN, PIXEL_COLUMN):
        if input_schema.get_field_index(name) < 0:
            raise IngestError(
                f"director index input lacks column {name!r} (it has {input_schema.names})"
            )
    key_type = input_schema.field(key_column).type
    if pa.types.is_integer(key_type):
        stored_key = pa.int64()
    elif pa.types.is_string(key_type) or pa.types.is_large_string(key_type):
        stored_key = pa.string()
    else:
        raise IngestError(
            f"column {key_column!r} has type {key_type}; director keys must be integers or strings"
        )
    with_healpix = input_schema.get_field_index(HEALPIX_COLUMN) >= 0
    integers = (ORDER_COLUMN, PIXEL_COLUMN) + ((HEALPIX_COLUMN,) if with_healpix else ())
    for name in integers:
        if not pa.types.is_integer(input_schema.field(name).type):
            raise IngestError(
                f"column {name!r} has type {input_schema.field(name).type}; it must be an integer"
            )
    version = FORMAT_VERSION_WITH_HEALPIX if with_healpix else FORMAT_VERSION
    metadata = {KEY_COLUMN_METADATA: key_column.encode(), FORMAT_METADATA: version}
    fields = [
        pa.field(key_column, stored_key, nullable=False),
        pa.field(ORDER_COLUMN, pa.uint8(), nullable=False),
        pa.field(PIXEL_COLUMN, pa.int64(), nullable=False),
    ]
    if with_healpix:
        fields.append(pa.field(HEALPIX_COLUMN, pa.int64(), nullable=False))
    return pa.schema(fields, metadata=metadata)


def _writer_options(schema: pa.Schema) -> dict[str, Any]:
    """Parquet options: compact sorted keys, statistics on, sort order declared."""
    key_name = schema.names[0]
    # Delta encodings suit sorted unique keys far better than dictionaries.
    key_encoding = (
        "DELTA_BINARY_PACKED" if pa.types.is_integer(schema.field(0).type) else "DELTA_BYTE_ARRAY"
    )
    return {
        "compression": "zstd",
        "use_dictionary": [ORDER_COLUMN, PIXEL_COLUMN],
        "column_encoding": {key_name: key_encoding},
        "write_statistics": True,
        "sorting_columns": [pq.SortingColumn(0)],
    }


def _index_rows(
    batch: pa.RecordBatch, schema: pa.Schema, key_column: str, *, first_row: int
) -> pa.RecordBatch:
    """Select, validate and cast one input batch to the file schema.

    ``first_row`` is the 0-based input row of the batch's first row, so errors
    can say where the bad value is.
    """
    if batch.schema.get_field_index(key_column) < 0:
        raise IngestError(f"input batch at row {first_row} lacks column {key_column!r}")
    key = batch.column(key_column)
    _reject_nulls(key, key_column, None, first_row)
    try:
        key = key.cast(schema.field(0).type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise IngestError(f"column {key_column!r} at input row {first_row}+: {err}") from err
    if pa.types.is_string(key.type):
        _reject_long_keys(key, key_column, first_row)
    order = _partition_column(batch, ORDER_COLUMN, key, key_column, first_row)
    pixel = _partition_column(batch, PIXEL_COLUMN, key, key_column, first_row)
    _check_pixels(order, pixel, key, key_column, first_row)
    arrays = [key, pa.array(order, pa.uint8()), pa.array(pixel, pa.int64())]
    if len(schema) > len(INDEX_COLUMNS):
        healpix = _partition_column(batch, HEALPIX_COLUMN, key, key_column, first_row)
        _check_healpix(order, pixel, healpix, key, key_column, first_row)
        arrays.append(pa.array(healpix, pa.int64()))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _partition_column(
    batch: pa.RecordBatch, name: str, key: pa.Array, key_column: str, first_row: int
) -> np.ndarray:
    """One partition column as int64 numpy values, nulls and overflow rejected."""
    if batch.schema.get_field_index(name) < 0:
        raise IngestError(f"input batch at row {first_row} lacks column {name!r}")
    column = batch.column(name)
    _reject_nulls(column, name, (key, key_column), first_row)
    try:
        return column.cast(pa.int64()).to_numpy()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise IngestError(f"column {name!r} at input row {first_row}+: {err}") from err


def _reject_nulls(
    column: pa.Array, name: str, key: tuple[pa.Array, str] | None, first_row: int
) -> None:
    if column.null_count == 0:
        return
    i = pc.index(column.is_null(), True).as_py()
    owner = "" if key is None else f" for {key[1]} {key[0][i].as_py()!r}"
    raise IngestError(f"null {name!r} at input row {first_row + i}{owner}")


def _reject_long_keys(key: pa.Array, key_column: str, first_row: int) -> None:
    too_long = pc.greater(pc.binary_length(key), MAX_STRING_KEY_BYTES)
    if pc.any(too_long).as_py():
        i = pc.index(too_long, True).as_py()
        raise IngestError(
            f"{key_column} key at input row {first_row + i} is longer than "
            f"{MAX_STRING_KEY_BYTES} bytes (starts {key[i].as_py()[:40]!r})"
        )


def _check_pixels(
    order: np.ndarray, pixel: np.ndarray, key: pa.Array, key_column: str, first_row: int
) -> None:
    """Reject orders outside 0..29 and pixels outside 0 .. 12*4**order - 1."""
    clipped = np.clip(order, 0, HEALPIX_ORDER)
    pixels_at_order = np.int64(12) << (2 * clipped)
    bad = (order != clipped) | (pixel < 0) | (pixel >= pixels_at_order)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise IngestError(
            f"{key_column} {key[i].as_py()!r} at input row {first_row + i} has no valid "
            f"HEALPix partition: {ORDER_COLUMN}={order[i]}, {PIXEL_COLUMN}={pixel[i]}"
        )


def _check_healpix(
    order: np.ndarray,
    pixel: np.ndarray,
    healpix: np.ndarray,
    key: pa.Array,
    key_column: str,
    first_row: int,
) -> None:
    """Reject order-29 indexes that do not lie in their row's partition."""
    shift = (2 * (HEALPIX_ORDER - order)).astype(np.int64)
    bad = (healpix < 0) | ((healpix >> shift) != pixel)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise IngestError(
            f"{key_column} {key[i].as_py()!r} at input row {first_row + i}: "
            f"{HEALPIX_COLUMN}={healpix[i]} is not in its partition "
            f"{ORDER_COLUMN}={order[i]}, {PIXEL_COLUMN}={pixel[i]}"
        )


class _AscendingKeys:
    """Checks that keys are strictly ascending across all batches."""

    def __init__(self, key_column: str) -> None:
        self.key_column = key_column
        self.rows = 0
        self.first: object = None
        self.last: object = None

    def check(self, keys: pa.Array) -> None:
        """Raise IngestError at the first key not above its predecessor."""
        if len(keys) == 0:
            return
        head = keys[0].as_py()
        # Python orders str by code point, which is the UTF-8 byte order Arrow uses.
        if self.last is not None and head <= self.last:
            self._fail(head, self.last, self.rows)
        not_rising = pc.less_equal(keys[1:], keys[:-1])
        if pc.any(not_rising).as_py():
            i = pc.index(not_rising, True).as_py()
            self._fail(keys[i + 1].as_py(), keys[i].as_py(), self.rows + i + 1)
        if self.first is None:
            self.first = head
        self.last = keys[-1].as_py()
        self.rows += len(keys)

    def _fail(self, key: object, previous: object, row: int) -> None:
        if key == previous:
            problem = "is a duplicate"
        else:
            problem = f"is out of order (it follows {previous!r})"
        raise IngestError(
            f"{self.key_column} key {key!r} at input row {row} {problem}; the director index "
            f"needs unique keys sorted ascending"
        )


class _RowGroupBuffer:
    """Re-cuts batches of any size into tables of exactly ``rows`` rows."""

    def __init__(self, schema: pa.Schema, rows: int) -> None:
        self.schema = schema
        self.rows = rows
        self.pending: list[pa.RecordBatch] = []
        self.pending_rows = 0

    def push(self, batch: pa.RecordBatch) -> list[pa.Table]:
        """Add ``batch``; return the full row groups it completes."""
        full: list[pa.Table] = []
        offset = 0
        while offset < len(batch):
            take = min(self.rows - self.pending_rows, len(batch) - offset)
            self.pending.append(batch.slice(offset, take))  # zero-copy
            self.pending_rows += take
            offset += take
            if self.pending_rows == self.rows:
                full.append(self._drain())
        return full

    def flush(self) -> pa.Table | None:
        """The last, shorter row group, if any rows remain."""
        return self._drain() if self.pending_rows else None

    def _drain(self) -> pa.Table:
        table = pa.Table.from_batches(self.pending, schema=self.schema)
        self.pending, self.pending_rows = [], 0
        return table


@contextlib.contextmanager
def _replace_on_success(path: Path) -> Iterator[str]:
    """Yield a staging file beside ``path``; rename it onto ``path`` on success."""
    try:
        fd, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise IngestError(f"cannot write director index {path}: {err}") from err
    os.close(fd)
    try:
        yield staging
        os.replace(staging, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)
        raise


# ---------------------------------------------------------------------------
# reading


class DirectorIndex:
    """Read side of a director index: key -> :class:`Partition` (and HEALPix index).

    Opening reads only the Parquet footer and keeps the row groups' key
    ranges. A lookup reads each row group holding a wanted key once, and no
    other; ``row_groups_read`` counts the row groups read so far (for tests
    and EXPLAIN).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._metadata = _read_footer(self.path)
        self._key_column, self._key_is_string, self._has_healpix = _key_column_of(
            self._metadata, self.path
        )
        self._mins, self._maxs = _row_group_ranges(self._metadata, self.path)
        self.row_groups_read = 0

    @property
    def key_column(self) -> str:
        """Name of the director key column (as in the director table)."""
        return self._key_column

    @property
    def has_healpix(self) -> bool:
        """Whether lookups also give each key's ``_healpix_29`` (format 2)."""
        return self._has_healpix

    @property
    def num_rows(self) -> int:
        """Number of keys in the index."""
        return int(self._metadata.num_rows)

    @property
    def num_row_groups(self) -> int:
        """Number of row groups in the index file."""
        return int(self._metadata.num_row_groups)

    def lookup(self, keys: Iterable[object]) -> dict[object, Partition]:
        """Partition of each key found; keys absent from the index are absent here.

        Integer indexes take Python or numpy integers, string indexes take
        ``str``; a key of the other kind raises :class:`InputError`.
        """
        return {key: found.partition for key, found in self.locate(keys).items()}

    def locate(self, keys: Iterable[object]) -> dict[object, KeyLocation]:
        """Like :meth:`lookup`, with each key's ``_healpix_29`` when the index has it."""
        wanted = self._sorted_unique(keys)
        groups = np.searchsorted(self._maxs, wanted, side="left")
        # A key lies in the first row group whose max is >= key, if that
        # group's min is <= key; otherwise it falls between groups or outside.
        candidate = groups < len(self._maxs)
        candidate[candidate] = self._mins[groups[candidate]] <= wanted[candidate]
        wanted, groups = wanted[candidate], groups[candidate]
        found: dict[object, KeyLocation] = {}
        if len(wanted) == 0:
            return found
        # ``wanted`` is sorted, so each row group's keys form one run.
        starts = np.flatnonzero(np.diff(groups, prepend=-1))
        ends = np.append(starts[1:], len(wanted))
        with pq.ParquetFile(self.path, metadata=self._metadata) as parquet:
            for start, end in zip(starts, ends, strict=True):
                self._find_in_row_group(parquet, int(groups[start]), wanted[start:end], found)
        return found

    def lookup_one(self, key: object) -> Partition | None:
        """Partition holding ``key``, or None; reads at most one row group."""
        return self.lookup((key,)).get(key)

    def _find_in_row_group(
        self,
        parquet: pq.ParquetFile,
        group: int,
        wanted: np.ndarray,
        found: dict[object, KeyLocation],
    ) -> None:
        columns = [self._key_column, ORDER_COLUMN, PIXEL_COLUMN]
        if self._has_healpix:
            columns.append(HEALPIX_COLUMN)
        table = parquet.read_row_group(group, columns=columns)
        self.row_groups_read += 1
        stored = table.column(0).to_numpy()
        at = np.searchsorted(stored, wanted, side="left")
        hit = at < len(stored)
        hit[hit] = stored[at[hit]] == wanted[hit]
        rows = at[hit]
        orders = table.column(1).to_numpy()[rows].tolist()
        pixels = table.column(2).to_numpy()[rows].tolist()
        healpix: list[int | None] = (
            table.column(3).to_numpy()[rows].tolist() if self._has_healpix else [None] * len(rows)
        )
        for key, order, pixel, h in zip(wanted[hit].tolist(), orders, pixels, healpix, strict=True):
            found[key] = KeyLocation(Partition(order, pixel), h)

    def _sorted_unique(self, keys: Iterable[object]) -> np.ndarray:
        """Wanted keys as a sorted array comparable with the stored keys."""
        if self._key_is_string:
            strings = [self._checked(key, str, "a string") for key in keys]
            return np.unique(np.array(strings, dtype=object))
        if isinstance(keys, np.ndarray) and keys.dtype.kind in "iu":
            # Vectorised path for large IN lists arriving as numpy arrays.
            values = keys.ravel()
            if values.dtype.kind == "u":
                values = values[values <= INT64_MAX]
            return np.unique(values.astype(np.int64))
        integers = [int(self._checked(key, (int, np.integer), "an integer")) for key in keys]
        # Keys beyond int64 cannot be stored, so they are simply not found.
        in_range = [key for key in integers if INT64_MIN <= key <= INT64_MAX]
        return np.unique(np.array(in_range, dtype=np.int64))

    def _checked(self, key: object, kind: type | tuple[type, ...], noun: str) -> Any:
        if isinstance(key, bool) or not isinstance(key, kind):
            raise InputError(
                f"lookup key {key!r} ({type(key).__name__}) is not {noun}, "
                f"as the director index {self.path} requires",
                column=self._key_column,
            )
        return key

    def __repr__(self) -> str:
        return (
            f"DirectorIndex({str(self.path)!r}, key_column={self._key_column!r}, "
            f"rows={self.num_rows}, row_groups={self.num_row_groups})"
        )


def _read_footer(path: Path) -> pq.FileMetaData:
    try:
        return pq.read_metadata(path)
    except FileNotFoundError as err:
        raise IntegrityError(f"director index {path} is missing") from err
    except (OSError, pa.ArrowException) as err:
        raise IntegrityError(f"director index {path} is not readable Parquet: {err}") from err


def _key_column_of(metadata: pq.FileMetaData, path: Path) -> tuple[str, bool, bool]:
    """Key column name from the file metadata, checked against the schema; whether
    the key is a string; whether the file has the ``_healpix_29`` column."""
    key_value = metadata.metadata or {}
    if KEY_COLUMN_METADATA not in key_value:
        raise IntegrityError(f"{path} is not a director index (no {KEY_COLUMN_METADATA.decode()})")
    key_column = key_value[KEY_COLUMN_METADATA].decode()
    schema = metadata.schema.to_arrow_schema()
    expected = [key_column, ORDER_COLUMN, PIXEL_COLUMN]
    with_healpix = [*expected, HEALPIX_COLUMN]
    if schema.names not in (expected, with_healpix):
        raise IntegrityError(f"director index {path} has columns {schema.names}, not {expected}")
    key_type = schema.field(0).type
    if key_type not in (pa.int64(), pa.string()):
        raise IntegrityError(f"director index {path} has key type {key_type}")
    return key_column, key_type == pa.string(), schema.names == with_healpix


def _row_group_ranges(metadata: pq.FileMetaData, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Per-row-group key min and max from the footer statistics, checked disjoint."""
    mins: list[object] = []
    maxs: list[object] = []
    for i in range(metadata.num_row_groups):
        stats = metadata.row_group(i).column(0).statistics
        if stats is None or not stats.has_min_max:
            raise IntegrityError(f"director index {path}: row group {i} has no key statistics")
        mins.append(stats.min)
        maxs.append(stats.max)
    dtype = np.int64 if metadata.schema.to_arrow_schema().field(0).type == pa.int64() else object
    lo, hi = np.array(mins, dtype=dtype), np.array(maxs, dtype=dtype)
    if not (np.all(lo <= hi) and np.all(lo[1:] > hi[:-1])):
        raise IntegrityError(
            f"director index {path}: row group key ranges are not sorted and disjoint"
        )
    return lo, hi
