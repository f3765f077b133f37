"""Write an Arrow table as any ingest input format (test data for readers and ingest).

Each writer keeps every value the format can represent exactly:

- Parquet: pyarrow, as is.
- CSV: header line; NULL is an empty unquoted field; strings are always
  quoted (so ``""`` and ``"null"`` stay strings); floats use the shortest
  decimal that round-trips (Python ``repr`` for float64, NumPy's for float32).
  ``.tsv`` is tab-separated; a ``.gz`` suffix gzip-compresses.
- FITS: astropy BinTableHDU in the first extension, with explicit TFORMs (not
  ``Table.write``: it stores int8 as logicals and masked booleans as True).
  NULL integers use a TNULL value the column does not otherwise hold, NULL
  floats are NaN, NULL booleans a zero byte, NULL strings blank; unsigned
  and int8 columns use the standard TZERO offsets. ``.gz`` compresses.
- VOTable: astropy, TABLEDATA, masked values as nulls; booleans as
  ``boolean``; int8 as ``short`` (VOTable has no signed byte). ``.gz``
  compresses.

Timestamps are written to Parquet and CSV (ISO 8601), binary only to Parquet;
other formats raise TypeError for them.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from astropy.io import fits
from astropy.io.votable import from_table
from astropy.table import MaskedColumn, Table

WRITE_FORMATS = ("parquet", "csv", "fits", "votable")


def write_as(table: pa.Table, path: Path, fmt: str) -> Path:
    """Write ``table`` to ``path`` in format ``fmt`` (one of WRITE_FORMATS); return ``path``."""
    writers: dict[str, Callable[[pa.Table, Path], None]] = {
        "parquet": _write_parquet,
        "csv": _write_csv,
        "fits": _write_fits,
        "votable": _write_votable,
    }
    if fmt not in writers:
        raise ValueError(f"unknown format {fmt!r}; expected one of {WRITE_FORMATS}")
    path = Path(path)
    writers[fmt](table, path)
    return path


def _write_bytes(path: Path, data: bytes) -> None:
    if path.suffix.lower() == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def _unsupported(fmt: str, field: pa.Field) -> TypeError:
    return TypeError(f"{fmt} cannot store column {field.name!r} of type {field.type}")


# -- Parquet ----------------------------------------------------------------


def _write_parquet(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path)


# -- CSV --------------------------------------------------------------------


def _quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _csv_formatter(field: pa.Field) -> Callable[[Any], str]:
    t = field.type
    if pa.types.is_boolean(t):
        return lambda v: "true" if v else "false"
    if pa.types.is_integer(t):
        return str
    if pa.types.is_float32(t):
        return lambda v: str(np.float32(v))
    if pa.types.is_floating(t):
        return repr
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return _quote
    if pa.types.is_timestamp(t) and t.tz is None:
        return lambda v: v.isoformat(sep=" ")
    raise _unsupported("CSV", field)


def _write_csv(table: pa.Table, path: Path) -> None:
    delimiter = "\t" if ".tsv" in [s.lower() for s in path.suffixes] else ","
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        fmt = _csv_formatter(field)
        columns.append(["" if v is None else fmt(v) for v in column.to_pylist()])
    header = delimiter.join(
        _quote(n) if (delimiter in n or '"' in n) else n for n in table.column_names
    )
    lines = [header, *(delimiter.join(row) for row in zip(*columns, strict=True))]
    _write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))


# -- FITS -------------------------------------------------------------------

#: Arrow integer type -> (TFORM, TZERO).
_FITS_INTEGERS = {
    pa.int8(): ("B", -(2**7)),
    pa.uint8(): ("B", 0),
    pa.int16(): ("I", 0),
    pa.uint16(): ("I", 2**15),
    pa.int32(): ("J", 0),
    pa.uint32(): ("J", 2**31),
    pa.int64(): ("K", 0),
    pa.uint64(): ("K", 2**63),
}
_FITS_BYTES = {"L": 1, "B": 1, "I": 2, "J": 4, "K": 8, "E": 4, "D": 8}


def _unused_value(values: list[int], t: pa.DataType) -> int:
    """An integer of type ``t`` the column does not hold (to serve as its TNULL)."""
    info = np.iinfo(t.to_pandas_dtype())
    used = set(values)
    candidate = int(info.min)
    while candidate in used:
        candidate += 1
    if candidate > info.max:
        raise ValueError("every value of the type is used; no TNULL is possible")
    return candidate


def _fits_column(field: pa.Field, column: pa.ChunkedArray) -> tuple[fits.Column, int]:
    """The astropy column for ``field`` and its width in bytes."""
    t = field.type
    nulls = column.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_boolean(t):
        values = pc.fill_null(column, False).to_numpy(zero_copy_only=False)
        return fits.Column(name=field.name, format="L", array=values), 1
    if t in _FITS_INTEGERS:
        tform, tzero = _FITS_INTEGERS[t]
        kwargs: dict[str, Any] = {"bzero": tzero} if tzero else {}
        fill = 0
        if nulls.any():
            fill = _unused_value([v for v in column.to_pylist() if v is not None], t)
            kwargs["null"] = fill - tzero  # TNULL applies to the stored value
        values = pc.fill_null(column, pa.scalar(fill, t)).to_numpy(zero_copy_only=False)
        return fits.Column(name=field.name, format=tform, array=values, **kwargs), _FITS_BYTES[
            tform
        ]
    if pa.types.is_floating(t):
        tform = "E" if pa.types.is_float32(t) else "D"
        values = pc.fill_null(column, pa.scalar(float("nan"), t)).to_numpy(zero_copy_only=False)
        return fits.Column(name=field.name, format=tform, array=values), _FITS_BYTES[tform]
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        encoded = [(v or "").encode("utf-8") for v in column.to_pylist()]
        width = max([1, *(len(b) for b in encoded)])
        array = np.array(encoded, dtype=f"S{width}")
        return fits.Column(name=field.name, format=f"{width}A", array=array), width
    raise _unsupported("FITS", field)


def _write_fits(table: pa.Table, path: Path) -> None:
    columns, widths = [], []
    for field, column in zip(table.schema, table.columns, strict=True):
        fits_column, width = _fits_column(field, column)
        columns.append(fits_column)
        widths.append(width)
    buffer = io.BytesIO()
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(columns)])
    hdul.writeto(buffer)
    data = bytearray(buffer.getvalue())
    # astropy cannot write a NULL logical (a zero byte); put them in place.
    with fits.open(io.BytesIO(bytes(data))) as written:
        data_start = written.fileinfo(1)["datLoc"]
        row_bytes = written[1].header["NAXIS1"]
    column_start = 0
    for field, column, width in zip(table.schema, table.columns, widths, strict=True):
        if pa.types.is_boolean(field.type):
            for row in np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False)):
                data[data_start + int(row) * row_bytes + column_start] = 0
        column_start += width
    _write_bytes(path, bytes(data))


# -- VOTable ----------------------------------------------------------------


def _votable_column(field: pa.Field, column: pa.ChunkedArray) -> MaskedColumn:
    t = field.type
    mask = column.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_boolean(t):
        values: Any = pc.fill_null(column, False).to_numpy(zero_copy_only=False)
    elif pa.types.is_integer(t) or pa.types.is_floating(t):
        values = pc.fill_null(column, pa.scalar(0, t)).to_numpy(zero_copy_only=False)
        if pa.types.is_int8(t):
            values = values.astype(np.int16)
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        values = np.array([v or "" for v in column.to_pylist()], dtype=str)
    else:
        raise _unsupported("VOTable", field)
    return MaskedColumn(values, name=field.name, mask=mask)


def _write_votable(table: pa.Table, path: Path) -> None:
    astropy_table = Table(
        [
            _votable_column(field, column)
            for field, column in zip(table.schema, table.columns, strict=True)
        ]
    )
    document = from_table(astropy_table)
    for vo_field in document.get_first_table().fields:
        if vo_field.datatype == "bit":
            vo_field.datatype = "boolean"
    buffer = io.BytesIO()
    document.to_xml(buffer)
    _write_bytes(path, buffer.getvalue())
