"""Parquet results with VOTable metadata (IVOA Note "Parquet in the VO", VOParquet 1.0).

Columns hold the same values as the VOTable would (see
:mod:`services.tap.formats.columns`), so the embedded data-less VOTable
describes them exactly. Row groups of at least :data:`ROW_GROUP_ROWS` rows
are written to an in-memory sink that is emptied after each one, so memory
holds about one row group. The VOTable goes into the footer's key-value
metadata when the file is closed, which is when the writer knows whether
MAXREC cut the result: a truncated result's VOTable carries
``<INFO name="QUERY_STATUS" value="OVERFLOW"/>`` after its TABLE.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from qcat.czar.resolve import OutputColumn
from services.tap.formats.columns import ResultColumn, column_values, result_columns
from services.tap.formats.source import BatchSource
from services.tap.formats.vodoc import ResultInfo, table_end, table_start

ROW_GROUP_ROWS = 65_536
VERSION_KEY = "IVOA.VOTable-Parquet.version"
CONTENT_KEY = "IVOA.VOTable-Parquet.content"


class _Sink(io.RawIOBase):
    """A write-only file that keeps what was written until it is drained."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        chunk = bytes(data)
        self._parts.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def drain(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def metadata_votable(described: Sequence[ResultColumn], info: ResultInfo, *, overflow: bool) -> str:
    """The data-less VOTable describing the Parquet columns."""
    return table_start(described, info) + table_end(overflow=overflow)


def arrow_schema(described: Sequence[ResultColumn]) -> pa.Schema:
    """The Parquet file's schema: the unique names and converted types."""
    return pa.schema([pa.field(c.name, c.arrow_type) for c in described])


def write_parquet(
    source: BatchSource, columns: Sequence[OutputColumn], info: ResultInfo
) -> Iterator[bytes]:
    """The Parquet file's bytes, one piece per row group (and the footer)."""
    described = result_columns(source.schema, columns, source.first())
    schema = arrow_schema(described)
    sink = _Sink()
    writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), schema, store_schema=False)
    try:
        pending: list[pa.RecordBatch] = []
        rows = 0
        widths = _TextWidths(described)
        for batch in source:
            pending.append(_convert(described, schema, batch))
            widths.measure(pending[-1])
            rows += batch.num_rows
            if rows >= ROW_GROUP_ROWS:
                writer.write_table(pa.Table.from_batches(pending, schema))
                pending, rows = [], 0
                yield sink.drain()
        if pending:
            writer.write_table(pa.Table.from_batches(pending, schema))
        votable = metadata_votable(described, info, overflow=source.overflow)
        writer.add_key_value_metadata(
            {VERSION_KEY: "1.0", CONTENT_KEY: votable, **widths.metadata()}
        )
    finally:
        writer.close()
    yield sink.drain()


class _TextWidths:
    """Longest text of each text column, for readers that need it (astropy's
    ``table::len::NAME`` keys; without them it cannot read null strings)."""

    def __init__(self, described: Sequence[ResultColumn]) -> None:
        self._text = [(i, c.name) for i, c in enumerate(described) if c.kind == "text"]
        self._widest = dict.fromkeys((name for _, name in self._text), 1)

    def measure(self, batch: pa.RecordBatch) -> None:
        for i, name in self._text:
            longest = pc.max(pc.utf8_length(batch.column(i))).as_py()
            self._widest[name] = max(self._widest[name], longest or 0)

    def metadata(self) -> dict[str, str]:
        return {f"table::len::{name}": str(width) for name, width in self._widest.items()}


def _convert(
    described: Sequence[ResultColumn], schema: pa.Schema, batch: pa.RecordBatch
) -> pa.RecordBatch:
    arrays = [column_values(c, batch.column(i)) for i, c in enumerate(described)]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
