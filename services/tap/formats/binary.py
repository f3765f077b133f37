"""VOTable BINARY and BINARY2 rows, built a record batch at a time with numpy.

A row is the null-flag bytes (BINARY2 only), then each cell in column
order: fixed-width cells as big-endian values, variable-length cells
(strings, polygons, blobs) as a 4-byte element count and the elements.

The fixed-width parts of the rows (flags, scalars, fixed arrays and the
count prefixes) are filled column by column into numpy structured arrays
with big-endian fields, one per run of fixed-width cells between variable
ones; without variable columns that array already is the rows' bytes.
Otherwise each run becomes an Arrow binary array (zero copy) and Arrow's
element-wise join concatenates, per row in C++, the runs and the
variable-length cells (strings straight from their Arrow buffers, UTF-16,
polygons as big-endian doubles). Nothing loops over rows in Python.

Nulls: BINARY2 sets the row's flag bit and writes zero bytes (NaN for
floats, an empty array for variable cells); BINARY writes the column's
``<VALUES null>`` for integers, NaN for floats, ``?`` for booleans and an
empty array for variable cells.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from services.tap.formats.columns import ResultColumn, column_values

_TRUE, _FALSE, _NULL_BOOL = ord("T"), ord("F"), ord("?")


@dataclass(frozen=True)
class VarCells:
    """A variable-length column of one batch: per-row element counts and bytes."""

    counts: np.ndarray  # int64, elements per row (0 for null)
    nbytes: np.ndarray  # int64, bytes per row
    data: np.ndarray  # uint8, the rows' bytes one after another


def null_mask(values: pa.Array) -> np.ndarray:
    """Boolean numpy mask of the null cells."""
    if values.null_count == 0:
        return np.zeros(len(values), dtype=bool)
    return np.asarray(values.is_null().to_numpy(zero_copy_only=False), dtype=bool)


def fixed_values(column: ResultColumn, values: pa.Array, *, null: float | int | None) -> np.ndarray:
    """A fixed-width column as a numpy array of its element dtype (shape (n,) or (n, count)).

    Null cells hold ``null`` (``None``: zero), floats NaN whatever ``null`` is.
    """
    n = len(values)
    dtype = column.element_dtype
    if column.kind == "boolean":
        out = np.where(values.fill_null(False).to_numpy(zero_copy_only=False), _TRUE, _FALSE)
        out = out.astype(np.uint8)
        if values.null_count:
            out[null_mask(values)] = 0 if null is None else _NULL_BOOL
        return out
    if column.kind == "array":
        assert column.count is not None
        flat = values.values.slice(values.offset * column.count, n * column.count)
        out = _numbers(column, flat, null).reshape(n, column.count)
        if values.null_count:
            out = out.copy()
            out[null_mask(values)] = np.nan if dtype.kind == "f" else (null or 0)
        return out
    return _numbers(column, values, null)


def _numbers(column: ResultColumn, values: pa.Array, null: float | int | None) -> np.ndarray:
    dtype = column.element_dtype
    if dtype.kind == "f":
        fill: float | int = np.nan
    else:
        fill = 0 if null is None else null
    if values.null_count:
        values = values.fill_null(pa.scalar(fill, values.type))
    return np.asarray(values.to_numpy(zero_copy_only=False))


def var_cells(column: ResultColumn, values: pa.Array, *, null: int | None = None) -> VarCells:
    """A variable-length column's counts and bytes (text, blobs, variable arrays).

    Null cells are empty; null elements of an integer array hold ``null`` (else 0).
    """
    if column.kind in ("text", "blob"):
        if values.null_count:
            values = values.fill_null("" if column.kind == "text" else b"")
        offsets, data = _buffers(values)
        nbytes = np.diff(offsets)
        if column.datatype == "unicodeChar":
            return _utf16(offsets, data, nbytes)
        return VarCells(nbytes, nbytes, data)
    flat = values.flatten()
    counts = np.asarray(values.value_lengths().fill_null(0).to_numpy(zero_copy_only=False))
    counts = counts.astype(np.int64)
    elements = _numbers(column, flat, null).astype(column.element_dtype, copy=False)
    data = np.ascontiguousarray(elements).view(np.uint8)
    return VarCells(counts, counts * column.element_dtype.itemsize, data)


def _buffers(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (int64, rebased to 0) and data bytes of a large string/binary array."""
    buffers = values.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64)[
        values.offset : values.offset + len(values) + 1
    ]
    start, end = int(offsets[0]), int(offsets[-1])
    if buffers[2] is None or end == start:
        return offsets - start, np.zeros(0, dtype=np.uint8)
    return offsets - start, np.frombuffer(buffers[2], dtype=np.uint8)[start:end]


def _utf16(offsets: np.ndarray, data: np.ndarray, nbytes: np.ndarray) -> VarCells:
    """unicodeChar cells: UTF-16BE code units (characters outside the BMP take two)."""
    encoded = data.tobytes().decode("utf-8").encode("utf-16-be")
    # Code units per row: one per UTF-8 lead byte, two for 4-byte sequences.
    lead = (data & 0xC0) != 0x80
    units_per_byte = lead.astype(np.int64) + (data >= 0xF0)
    cumulative = np.concatenate(([0], np.cumsum(units_per_byte)))
    units = cumulative[offsets[1:]] - cumulative[offsets[:-1]]
    return VarCells(units, units * 2, np.frombuffer(encoded, dtype=np.uint8))


class RowEncoder:
    """Encodes record batches into BINARY (``null_flags=False``) or BINARY2 row bytes."""

    def __init__(self, columns: Sequence[ResultColumn], *, null_flags: bool) -> None:
        self.columns = list(columns)
        self.null_flags = null_flags
        self.flag_bytes = (len(self.columns) + 7) // 8 if null_flags else 0
        # The row is cut after each variable column's count prefix: fixed-width
        # runs (numpy structured dtypes) alternate with variable-length cells.
        self._runs: list[list[tuple[str, np.dtype[Any]]]] = [[]]
        if self.flag_bytes:
            self._runs[0].append(("flags", np.dtype((np.uint8, (self.flag_bytes,)))))
        for i, c in enumerate(self.columns):
            fmt: np.dtype[Any]
            if c.variable:
                fmt = np.dtype(">i4")
            elif c.count is not None:
                fmt = np.dtype((c.element_dtype, (c.count,)))
            else:
                fmt = c.element_dtype
            self._runs[-1].append((f"c{i}", fmt))
            if c.variable:
                self._runs.append([])
        self._dtypes = [_packed(run) for run in self._runs]
        self._run_of = {name: k for k, run in enumerate(self._runs) for name, _ in run}

    def encode(self, batch: pa.RecordBatch) -> bytes:
        """The rows of ``batch`` as bytes (a buffer)."""
        n = batch.num_rows
        runs = [np.zeros(n, dtype=dtype) for dtype in self._dtypes]
        nulls = []
        var: list[pa.Array] = []
        for i, c in enumerate(self.columns):
            values = column_values(c, batch.column(i))
            if self.null_flags:
                nulls.append(null_mask(values))
            run = runs[self._run_of[f"c{i}"]]
            if c.variable:
                cells = var_cells(c, values, null=None if self.null_flags else c.null_value)
                run[f"c{i}"] = cells.counts
                var.append(_binary_array(cells))
            else:
                magic = None if self.null_flags else c.null_value
                run[f"c{i}"] = fixed_values(c, values, null=magic)
        if self.flag_bytes:
            runs[0]["flags"] = np.packbits(np.stack(nulls, axis=1), axis=1, bitorder="big")
        if not var:
            return runs[0].tobytes()
        # Arrow joins the pieces of each row in C++: runs and cells alternate.
        pieces: list[pa.Array] = []
        for k, run in enumerate(runs):
            if run.dtype.itemsize:
                pieces.append(_fixed_binary(run))
            if k < len(var):
                pieces.append(var[k])
        joined = pc.binary_join_element_wise(*pieces, pa.scalar(b"", pa.large_binary()))
        return _buffers(joined)[1].tobytes()


def _packed(fields: list[tuple[str, np.dtype[Any]]]) -> np.dtype[Any]:
    """A structured dtype with ``fields`` back to back, no padding."""
    offsets, position = [], 0
    for _, fmt in fields:
        offsets.append(position)
        position += fmt.itemsize
    return np.dtype(
        {
            "names": [name for name, _ in fields],
            "formats": [fmt for _, fmt in fields],
            "offsets": offsets,
            "itemsize": position,
        }
    )


def _fixed_binary(rows: np.ndarray) -> pa.Array:
    """Each row of a structured array as one ``large_binary`` value (zero copy until the cast)."""
    width = rows.dtype.itemsize
    fixed = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width), len(rows), [None, pa.py_buffer(rows.view(np.uint8))]
    )
    return fixed.cast(pa.large_binary())


def _binary_array(cells: VarCells) -> pa.Array:
    """Variable-length cells as a ``large_binary`` array over their bytes."""
    offsets = np.zeros(len(cells.nbytes) + 1, dtype=np.int64)
    np.cumsum(cells.nbytes, out=offsets[1:])
    return pa.LargeBinaryArray.from_buffers(
        pa.large_binary(),
        len(cells.nbytes),
        [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(cells.data))],
    )
