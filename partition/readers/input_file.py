"""What every format reader provides, and helpers they share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa

from qcat.errors import ConfigError, InputError


def reason(exc: BaseException) -> str:
    """A one-line description of an exception raised by a parsing library."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class InputFile(ABC):
    """One input file opened for reading.

    Readers yield batches in the file's own column order and types (CSV
    parses straight into the wanted types); conforming them to a table's
    schema is done once, for every format, by :mod:`partition.readers.conform`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(
        self, message: str, *, row: int | None = None, column: str | None = None
    ) -> InputError:
        """An :class:`InputError` about this file."""
        return InputError(message, path=str(self.path), row=row, column=column)

    @abstractmethod
    def schema(self) -> pa.Schema:
        """The file's own column names (in file order) and Arrow types."""

    def count_rows(self) -> int | None:
        """Number of data rows when the format records it, else None."""
        return None

    def batch_schema(self, wanted: pa.Schema) -> pa.Schema:
        """Column names and types of the batches :meth:`batches` yields for ``wanted``."""
        return self.schema()

    @abstractmethod
    def batches(self, wanted: pa.Schema, batch_rows: int) -> Iterator[tuple[int, pa.RecordBatch]]:
        """Yield ``(first_row, batch)`` of at most ``batch_rows`` rows, in file order.

        ``wanted`` is the schema the batches will be conformed to; readers
        use its types when they parse text and its nullability where the
        format cannot tell an empty string from a missing one.
        """


def rebatch(
    pieces: Iterable[pa.RecordBatch], batch_rows: int
) -> Iterator[tuple[int, pa.RecordBatch]]:
    """Regroup batches of any size into ``(first_row, batch)`` of ``batch_rows`` rows.

    Every batch but the last has exactly ``batch_rows`` rows; at most one
    batch's worth of rows is held at a time.
    """
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    first_row = 0
    for piece in pieces:
        while piece.num_rows:
            take = min(batch_rows - pending_rows, piece.num_rows)
            pending.append(piece.slice(0, take))
            pending_rows += take
            piece = piece.slice(take)
            if pending_rows == batch_rows:
                yield first_row, _concat(pending)
                first_row += pending_rows
                pending, pending_rows = [], 0
    if pending_rows:
        yield first_row, _concat(pending)


def _concat(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    return batches[0] if len(batches) == 1 else pa.concat_batches(batches)


def check_batch_rows(batch_rows: int) -> None:
    """Reject a batch size that is not a positive number of rows."""
    if batch_rows < 1:
        raise ConfigError(f"batch_rows must be at least 1, got {batch_rows}")
