"""Streaming input readers for ingest: Parquet, CSV, FITS binary tables, VOTable.

>>> spec = spec_from_felis("dp1.yaml", "dp1.Object")          # doctest: +SKIP
>>> for first_row, batch in iter_batches(Path("obj.csv.gz"), spec):  # doctest: +SKIP
...     ...

Every batch is conformed to the table's Arrow schema: same names, order and
types, converted only when no value changes. Every problem is an
:class:`~qcat.errors.InputError` naming the file and, when known, the 0-based
data row and the column. Format conventions (NULLs, NaN, empty strings, ...)
are documented in the module of each format.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from partition.readers.conform import ConformPlan
from partition.readers.csv_input import CsvInput
from partition.readers.detect import FORMATS, detect_format
from partition.readers.fits_input import FitsInput
from partition.readers.input_file import InputFile, check_batch_rows
from partition.readers.parquet_input import ParquetInput
from partition.readers.votable_input import VotableInput
from qcat.errors import InputError
from qcat.schema import TableSpec

__all__ = ["FORMATS", "count_rows", "detect_format", "iter_batches", "open_input", "read_schema"]

DEFAULT_BATCH_ROWS = 262_144


def open_input(path: Path, *, hdu: int | str | None = None, table_index: int = 0) -> InputFile:
    """Open ``path`` with the reader its suffix calls for.

    ``hdu`` (index or EXTNAME) chooses the table of a FITS file and
    ``table_index`` that of a VOTable; other formats ignore them.
    """
    path = Path(path)
    fmt = detect_format(path)
    if not path.is_file():
        raise InputError("file not found", path=str(path))
    if fmt == "parquet":
        return ParquetInput(path)
    if fmt == "csv":
        return CsvInput(path)
    if fmt == "fits":
        return FitsInput(path, hdu=hdu)
    return VotableInput(path, table_index=table_index)


def read_schema(path: Path, *, hdu: int | str | None = None, table_index: int = 0) -> pa.Schema:
    """The file's own column names (file order) and Arrow types.

    Used to infer a table when there is no Felis schema. For CSV the types are
    inferred from the first block of rows.
    """
    return open_input(path, hdu=hdu, table_index=table_index).schema()


def count_rows(path: Path, *, hdu: int | str | None = None) -> int | None:
    """Number of data rows when it is cheap to know, else None.

    Parquet: from the footer. FITS: NAXIS2 of the table's header. CSV and
    VOTable: None (counting would mean reading the whole file).
    """
    if detect_format(Path(path)) in ("csv", "votable"):
        return None
    return open_input(path, hdu=hdu).count_rows()


def iter_batches(
    path: Path,
    spec: TableSpec | None,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    hdu: int | str | None = None,
    table_index: int = 0,
) -> Iterator[tuple[int, pa.RecordBatch]]:
    """Stream ``path`` as ``(first_row, batch)`` conformed to ``spec``.

    ``first_row`` is the 0-based data-row index in the file of the batch's
    first row; batches have at most ``batch_rows`` rows. Each batch has
    ``spec.arrow_schema()`` (the file's own schema when ``spec`` is None).
    Names, types and NOT NULL constraints are checked before the first batch
    and values as they are read; any problem raises :class:`InputError`.
    Memory stays bounded by the batch size, except for VOTable (parsed whole).

    The file is opened and its columns checked when this is called, so a
    file that cannot be ingested fails before any batch is requested.
    """
    check_batch_rows(batch_rows)
    source = open_input(path, hdu=hdu, table_index=table_index)
    wanted = spec.arrow_schema() if spec is not None else source.schema()
    plan = ConformPlan.build(str(source.path), source.batch_schema(wanted), wanted, spec)
    return _conformed(source, plan, wanted, batch_rows)


def _conformed(
    source: InputFile, plan: ConformPlan, wanted: pa.Schema, batch_rows: int
) -> Iterator[tuple[int, pa.RecordBatch]]:
    for first_row, batch in source.batches(wanted, batch_rows):
        yield first_row, plan.apply(batch, first_row)
