"""First ingest pass: read every input, validate it, and stage it as Parquet.

Staging turns inputs of any format into uniform Parquet files that DuckDB
sorts and checks out of core in the later passes. Each staged row keeps
where it came from (``_qcat_src``: input file number, ``_qcat_row``: data row
in that file), so every later error can name the file and row at fault.
Director rows get their ``_healpix_29`` here; child rows get theirs from their
director row later. A child table's Parquet file that already has the
table's exact columns and types is not copied: DuckDB reads it in place
(after its NOT NULL columns are checked), which halves the I/O of the
largest tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from partition.hats_writer import HEALPIX_COLUMN
from partition.healpix import check_positions, radec_to_healpix29
from partition.readers import iter_batches
from qcat.errors import InputError
from qcat.progress import Progress
from qcat.schema import TableSpec

SOURCE_COLUMN = "_qcat_src"
ROW_COLUMN = "_qcat_row"
#: Child tables, orphans kept: the row's own position index.
OWN_HEALPIX_COLUMN = "_qcat_own29"
STAGING_COLUMNS = (SOURCE_COLUMN, ROW_COLUMN, OWN_HEALPIX_COLUMN)


@dataclass(frozen=True)
class StagedInputs:
    """The staged Parquet files and how many rows each input gave.

    ``direct`` lists ``(input number, path)`` of Parquet inputs that need no
    staging: DuckDB reads them as they are (see :func:`readable_as_is`).
    """

    files: list[Path]
    rows_per_input: list[int]
    direct: list[tuple[int, Path]]

    @property
    def rows(self) -> int:
        """All staged rows."""
        return sum(self.rows_per_input)


def _positions(
    batch: pa.RecordBatch, ra_col: str, dec_col: str, path: Path, first_row: int
) -> tuple[np.ndarray, np.ndarray]:
    """The batch's positions as float64 arrays; :class:`InputError` on bad values."""
    arrays = []
    for col in (ra_col, dec_col):
        arr = batch.column(col)
        if arr.null_count:
            bad = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
            raise InputError("position is NULL", path=str(path), row=first_row + bad, column=col)
        arrays.append(arr.to_numpy(zero_copy_only=False).astype(np.float64, copy=False))
    ra, dec = arrays
    problem = check_positions(ra, dec)
    if problem is not None:
        i, message = problem
        d = dec[i]
        column = dec_col if not (np.isfinite(d) and -90.0 <= d <= 90.0) else ra_col
        raise InputError(message, path=str(path), row=first_row + i, column=column)
    return ra, dec


def stage_inputs(
    inputs: Sequence[Path],
    spec: TableSpec,
    stage_dir: Path,
    progress: Progress,
    *,
    own_position: tuple[str, str] | None = None,
    batch_rows: int = 262_144,
) -> StagedInputs:
    """Read, validate and stage every input file; one staged Parquet file per input.

    ``own_position`` (child tables whose orphans are kept) names the child's
    own position columns; their HEALPix index is staged too.
    """
    stage_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    counts: list[int] = []
    direct: list[tuple[int, Path]] = []
    for src, path in enumerate(inputs):
        if own_position is None and readable_as_is(path, spec):
            rows = _check_not_null(path, spec, batch_rows)
            direct.append((src, path))
            counts.append(rows)
            progress.advance(rows)
            continue
        out = stage_dir / f"input-{src:05d}.parquet"
        writer: pq.ParquetWriter | None = None
        rows = 0
        try:
            for first_row, batch in iter_batches(path, spec, batch_rows=batch_rows):
                batch = _stage_batch(batch, spec, path, src, first_row, own_position)
                if writer is None:
                    # Read back once by DuckDB: no dictionaries or statistics to build.
                    writer = pq.ParquetWriter(
                        out,
                        batch.schema,
                        compression="lz4",
                        use_dictionary=False,
                        write_statistics=False,
                    )
                writer.write_batch(batch)
                rows += batch.num_rows
                progress.advance(batch.num_rows)
        finally:
            if writer is not None:
                writer.close()
        if writer is not None:
            files.append(out)
        counts.append(rows)
    return StagedInputs(files, counts, direct)


def readable_as_is(path: Path, spec: TableSpec) -> bool:
    """Whether DuckDB can read ``path`` for ``spec`` without a staged copy.

    True for a child table's Parquet file whose columns have exactly the
    table's names and types: nothing to convert and no position to index, so
    copying it would only cost a full write and read of the table.
    """
    if spec.kind != "child" or path.suffix.lower() != ".parquet":
        return False
    try:
        found = pq.read_schema(path)
    except (OSError, pa.ArrowException):
        return False  # the staging reader reports the problem precisely
    wanted = spec.arrow_schema()
    if sorted(found.names) != sorted(wanted.names):
        return False
    return all(found.field(f.name).type == f.type for f in wanted)


def _check_not_null(path: Path, spec: TableSpec, batch_rows: int) -> int:
    """Check the NOT NULL columns (and the director key) of ``path``; return its rows."""
    columns = [c.name for c in spec.columns if not c.nullable]
    if spec.director_fk_column and spec.director_fk_column not in columns:
        columns.append(spec.director_fk_column)
    parquet = pq.ParquetFile(path)
    first_row = 0
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
        for name in columns:
            values = batch.column(name)
            if values.null_count:
                bad = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
                message = (
                    f"director key is NULL (the row must refer to a {spec.director_table} row)"
                    if name == spec.director_fk_column
                    else "NULL in a column the Felis schema declares not nullable"
                )
                raise InputError(message, path=str(path), row=first_row + bad, column=name)
        first_row += batch.num_rows
    return int(parquet.metadata.num_rows)


def _stage_batch(
    batch: pa.RecordBatch,
    spec: TableSpec,
    path: Path,
    src: int,
    first_row: int,
    own_position: tuple[str, str] | None,
) -> pa.RecordBatch:
    n = batch.num_rows
    columns = list(batch.columns)
    names = list(batch.schema.names)
    if spec.kind == "director":
        assert spec.ra_column and spec.dec_column
        ra, dec = _positions(batch, spec.ra_column, spec.dec_column, path, first_row)
        columns.append(pa.array(radec_to_healpix29(ra, dec), pa.int64()))
        names.append(HEALPIX_COLUMN)
    elif spec.kind == "child":
        assert spec.director_fk_column
        fk = batch.column(spec.director_fk_column)
        if fk.null_count:
            bad = int(np.flatnonzero(fk.is_null().to_numpy(zero_copy_only=False))[0])
            raise InputError(
                f"director key is NULL (the row must refer to a {spec.director_table} row)",
                path=str(path),
                row=first_row + bad,
                column=spec.director_fk_column,
            )
        if own_position is not None:
            ra, dec = _positions(batch, own_position[0], own_position[1], path, first_row)
            columns.append(pa.array(radec_to_healpix29(ra, dec), pa.int64()))
            names.append(OWN_HEALPIX_COLUMN)
    columns.append(pa.array(np.full(n, src, dtype=np.int32)))
    names.append(SOURCE_COLUMN)
    columns.append(pa.array(np.arange(first_row, first_row + n, dtype=np.int64)))
    names.append(ROW_COLUMN)
    return pa.RecordBatch.from_arrays(columns, names=names)
