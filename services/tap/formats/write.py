"""One entry point per use: stream a result (TAP), write a result file (``qcat query -o``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa

from qcat.czar.resolve import OutputColumn
from services.tap.formats.fits import write_fits
from services.tap.formats.parquet import write_parquet
from services.tap.formats.registry import OutputFormat, format_for_path
from services.tap.formats.source import BatchSource
from services.tap.formats.text import write_text
from services.tap.formats.urls import absolute_urls
from services.tap.formats.vodoc import NO_INFO, ResultInfo
from services.tap.formats.votable import write_votable


def write_result(
    fmt: OutputFormat,
    reader: pa.RecordBatchReader,
    columns: Sequence[OutputColumn],
    *,
    maxrec: int | None = None,
    info: ResultInfo = NO_INFO,
    base_url: str | None = None,
) -> Iterator[bytes]:
    """Stream the result read from ``reader`` encoded as ``fmt``.

    With ``base_url`` (the service's, no trailing slash), relative URLs in
    columns with UCD ``meta.ref.url`` are written as absolute ones
    (:mod:`services.tap.formats.urls`).

    At most ``maxrec`` rows are read (``None``: all); whether the reader had
    more is found by reading one row beyond the limit, and a VOTable then
    says ``QUERY_STATUS=OVERFLOW`` after its TABLE (Parquet in its VOTable
    metadata; CSV, TSV and FITS cannot say it). ``maxrec=0`` reads nothing
    and gives the metadata only (with OVERFLOW, as DALI asks).

    Nothing is read until the first piece is asked for; the first record
    batch is read before the first piece is produced, so an error there is
    raised before any output. An error later ends a VOTable with
    ``QUERY_STATUS=ERROR`` and is then raised; other formats stop short
    (a Parquet file without its footer is recognisably broken). The caller
    closes the reader (and the query) afterwards.
    """
    source = BatchSource(absolute_urls(reader, columns, base_url), maxrec)
    if fmt.is_votable:
        serialization = fmt.name.removeprefix("votable-").upper()
        return write_votable(serialization, source, columns, info)
    if fmt.name in ("csv", "tsv"):
        return write_text("tsv" if fmt.name == "tsv" else "csv", source, columns)
    if fmt.name == "fits":
        return write_fits(source, columns)
    if fmt.name == "parquet":
        return write_parquet(source, columns, info)
    raise ValueError(f"no writer for format {fmt.name!r}")


def write_result_file(
    reader: pa.RecordBatchReader,
    columns: Sequence[OutputColumn],
    path: Path,
    *,
    info: ResultInfo = NO_INFO,
) -> int:
    """Write the whole result to ``path`` in the format its extension names; return the rows.

    :class:`~qcat.errors.ConfigError` for an unknown extension (nothing is
    read then). A failed write leaves no partial file behind.
    """
    path = Path(path)
    fmt = format_for_path(path)
    counted = _Counted(reader)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with partial.open("wb") as f:
            for piece in write_result(fmt, counted.reader(), columns, info=info):
                f.write(piece)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return counted.rows


class _Counted:
    """Counts the rows that pass through a reader."""

    def __init__(self, reader: pa.RecordBatchReader) -> None:
        self._reader = reader
        self.rows = 0

    def reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(self._reader.schema, self._batches())

    def _batches(self) -> Iterator[pa.RecordBatch]:
        for batch in self._reader:
            self.rows += batch.num_rows
            yield batch
