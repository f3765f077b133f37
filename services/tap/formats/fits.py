"""FITS binary tables, streamed after the rows are spooled to a temporary file.

A FITS header states the row count (NAXIS2), string widths and the heap
size before any data, so the rows first go to an Arrow IPC file in a
temporary directory (removed when the writer finishes or is closed) while
their extents are measured; then the header, the rows and the heap are
streamed from it a batch at a time. Memory holds about one batch.

Columns: TTYPE (the unique name), TFORM, TUNIT, TUCD and TCOMM (the
description) where known. Types follow the VOTable mapping: booleans ``L``,
integers ``I``/``J``/``K`` with a TNULL the column's values do not use, floats
``E``/``D`` (null = NaN), text ``nA`` as UTF-8 padded with NULs to the widest
value (null = empty), fixed arrays ``nD`` and variable ones (polygons)
``PD``/``QD`` descriptors into the heap. A truncated result carries nothing
in-band.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from astropy.io import fits

from qcat.czar.resolve import OutputColumn
from services.tap.formats.binary import VarCells, fixed_values, var_cells
from services.tap.formats.columns import (
    ResultColumn,
    column_values,
    integer_range,
    result_columns,
)
from services.tap.formats.source import BatchSource

BLOCK = 2880
#: TNULL is the first of this many values from either end of the type the data do not use.
_CANDIDATES = 64
#: Heaps this large need 64-bit array descriptors (TFORM ``Q``).
_BIG_HEAP = 2**31
_CODES = {
    "boolean": "L",
    "unsignedByte": "B",
    "short": "I",
    "int": "J",
    "long": "K",
    "float": "E",
    "double": "D",
}


@dataclass
class _Extent:
    """What the header needs to know about one column, gathered while spooling."""

    has_null: bool = False
    #: Widest text in bytes; most elements in a variable array.
    widest: int = 0
    #: Heap bytes of a variable array column.
    heap: int = 0
    #: Values near the type's extremes (the TNULL candidates) that the data uses.
    used: set[int] = field(default_factory=set)


def write_fits(source: BatchSource, columns: Sequence[OutputColumn]) -> Iterator[bytes]:
    """The FITS file's bytes: primary HDU, then the BINTABLE header, rows and heap."""
    described = result_columns(source.schema, columns, source.first())
    with tempfile.TemporaryDirectory(prefix="qcat-fits-") as tmp:
        spool = Path(tmp) / "rows.arrows"
        schema = pa.schema([pa.field(c.name, c.arrow_type) for c in described])
        extents = [_Extent() for _ in described]
        rows = 0
        with pa.OSFile(str(spool), "wb") as sink, pa.ipc.new_stream(sink, schema) as ipc:
            for batch in source:
                arrays = [column_values(c, batch.column(i)) for i, c in enumerate(described)]
                for c, values, extent in zip(described, arrays, extents, strict=True):
                    _measure(c, values, extent)
                ipc.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
                rows += batch.num_rows
        layout = _Layout(described, extents)
        yield _primary_header()
        yield _table_header(layout, rows, layout.heap_size)
        written = 0
        heap_at = 0
        for batch in _batches(spool):
            data, heap_at = layout.encode(batch, heap_at)
            written += len(data)
            yield data
        for batch in _batches(spool):
            for piece in layout.heap(batch):
                written += len(piece)
                yield piece
        yield b"\0" * (-written % BLOCK)


def _batches(spool: Path) -> Iterator[pa.RecordBatch]:
    with pa.OSFile(str(spool), "rb") as f, pa.ipc.open_stream(f) as reader:
        yield from reader


def _measure(column: ResultColumn, values: pa.Array, extent: _Extent) -> None:
    extent.has_null = extent.has_null or values.null_count > 0
    if column.kind == "integer" and len(values) > values.null_count:
        low, high = integer_range(column.datatype)
        near = pc.filter(
            values,
            pc.or_(
                pc.less_equal(values, low + _CANDIDATES),
                pc.greater_equal(values, high - _CANDIDATES),
            ),
        )
        extent.used.update(v for v in near.to_pylist() if v is not None)
    elif column.kind in ("text", "blob"):
        lengths = pc.binary_length(values)
        extent.widest = max(extent.widest, int(pc.max(lengths).as_py() or 0))
        if column.kind == "blob":
            extent.heap += int(pc.sum(lengths).as_py() or 0)
    elif column.kind == "array" and column.count is None:
        lengths = pc.list_value_length(values)
        extent.widest = max(extent.widest, int(pc.max(lengths).as_py() or 0))
        extent.heap += int(pc.sum(lengths).as_py() or 0) * column.element_dtype.itemsize


def _tnull(column: ResultColumn, extent: _Extent) -> int | None:
    """An integer no value of the column takes (``None``: no nulls, or none is free)."""
    if not extent.has_null:
        return None
    low, high = integer_range(column.datatype)
    candidates = [*range(low, low + _CANDIDATES + 1), *range(high, high - _CANDIDATES - 1, -1)]
    return next((v for v in candidates if v not in extent.used), None)


class _Layout:
    """The row layout and TFORMs of the table."""

    def __init__(self, described: Sequence[ResultColumn], extents: Sequence[_Extent]) -> None:
        self.columns = list(described)
        self.heap_size = sum(e.heap for e in extents)
        descriptor = "Q" if self.heap_size >= _BIG_HEAP else "P"
        self.tforms: list[str] = []
        self.tnulls: list[int | None] = []
        names: list[str] = []
        formats: list[np.dtype[Any]] = []
        offsets: list[int] = []
        position = 0
        for i, (c, extent) in enumerate(zip(described, extents, strict=True)):
            tnull = _tnull(c, extent) if c.kind == "integer" else None
            self.tnulls.append(tnull)
            fmt: np.dtype[Any]
            if c.kind == "text":
                width = max(extent.widest, 1)
                fmt = np.dtype((np.uint8, (width,)))
                tform = f"{width}A"
            elif c.variable:
                fmt = np.dtype((">i8" if descriptor == "Q" else ">i4", (2,)))
                tform = f"{descriptor}{_CODES[c.datatype]}({extent.widest})"
            elif c.count is not None:
                fmt = np.dtype((c.element_dtype, (c.count,)))
                tform = f"{c.count}{_CODES[c.datatype]}"
            else:
                fmt = np.dtype("u1") if c.kind == "boolean" else c.element_dtype
                tform = _CODES[c.datatype]
            names.append(f"c{i}")
            formats.append(fmt)
            offsets.append(position)
            position += fmt.itemsize
            self.tforms.append(tform)
        self.row_width = position
        self.dtype = np.dtype(
            {"names": names, "formats": formats, "offsets": offsets, "itemsize": max(position, 1)}
        )

    def encode(self, batch: pa.RecordBatch, heap_at: int) -> tuple[bytes, int]:
        """The rows of ``batch``; variable arrays point into the heap from ``heap_at`` on."""
        rows = np.zeros(batch.num_rows, dtype=self.dtype)
        for i, c in enumerate(self.columns):
            values = batch.column(i)
            name = f"c{i}"
            if c.kind == "text":
                # FITS text is bytes: UTF-8 even for unicodeChar columns.
                _fill_text(rows[name], var_cells(replace(c, datatype="char"), values))
            elif c.variable:
                cells = var_cells(c, values)
                descriptors = rows[name]
                descriptors[:, 0] = cells.counts
                starts = np.zeros(len(cells.nbytes), dtype=np.int64)
                np.cumsum(cells.nbytes[:-1], out=starts[1:])
                descriptors[:, 1] = heap_at + starts
                heap_at += int(cells.nbytes.sum())
            elif c.kind == "boolean":
                rows[name] = fixed_values(c, values, null=None)
            else:
                rows[name] = fixed_values(c, values, null=self.tnulls[i])
        return rows.view(np.uint8)[: batch.num_rows * self.row_width].tobytes(), heap_at

    def heap(self, batch: pa.RecordBatch) -> Iterator[bytes]:
        """The heap bytes of ``batch``'s variable arrays, in the order :meth:`encode` counts."""
        for i, c in enumerate(self.columns):
            if c.variable and c.kind != "text":
                yield var_cells(c, batch.column(i)).data.tobytes()


def _fill_text(target: np.ndarray, cells: VarCells) -> None:
    """Write each row's bytes at the start of its fixed-width slot (the rest stays NUL)."""
    if not len(cells.data):
        return
    n = len(target)
    first = np.zeros(n, dtype=np.int64)
    np.cumsum(cells.nbytes[:-1], out=first[1:])
    row_of = np.repeat(np.arange(n), cells.nbytes)
    within = np.arange(len(cells.data)) - np.repeat(first, cells.nbytes)
    target[row_of, within] = cells.data


def _ascii(text: str) -> str:
    return text.encode("ascii", "replace").decode("ascii")


def _primary_header() -> bytes:
    header = fits.Header([("SIMPLE", True), ("BITPIX", 8), ("NAXIS", 0), ("EXTEND", True)])
    return header.tostring().encode("ascii")


def _table_header(layout: _Layout, rows: int, heap: int) -> bytes:
    header = fits.Header(
        [
            ("XTENSION", "BINTABLE", "binary table extension"),
            ("BITPIX", 8),
            ("NAXIS", 2),
            ("NAXIS1", layout.row_width, "bytes per row"),
            ("NAXIS2", rows, "rows"),
            ("PCOUNT", heap, "heap bytes"),
            ("GCOUNT", 1),
            ("TFIELDS", len(layout.columns)),
        ]
    )
    for n, (c, tform, tnull) in enumerate(
        zip(layout.columns, layout.tforms, layout.tnulls, strict=True), start=1
    ):
        header[f"TTYPE{n}"] = _ascii(c.name)
        header[f"TFORM{n}"] = tform
        if tnull is not None:
            header[f"TNULL{n}"] = tnull
        if c.unit:
            header[f"TUNIT{n}"] = _ascii(c.unit)
        if c.ucd:
            header[f"TUCD{n}"] = _ascii(c.ucd)
        if c.description:
            header[f"TCOMM{n}"] = _ascii(c.description)
    header["EXTNAME"] = "RESULT"
    return header.tostring().encode("ascii")
