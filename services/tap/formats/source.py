"""The rows a writer takes from a query: at most MAXREC, and whether there were more.

Truncation is detected as datasette does: by reading one row beyond the
limit. ``maxrec=0`` reads nothing and always reports an overflow, as DALI
1.1 asks of a metadata-only query.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa


class BatchSource:
    """Record batches of ``reader`` up to ``maxrec`` rows (``None``: all), read lazily."""

    def __init__(self, reader: pa.RecordBatchReader, maxrec: int | None = None) -> None:
        if maxrec is not None and maxrec < 0:
            raise ValueError(f"maxrec must be 0 or more, not {maxrec}")
        self.schema: pa.Schema = reader.schema
        self.maxrec = maxrec
        #: Rows handed out so far.
        self.rows = 0
        #: Whether the reader held more rows than were handed out (known at the end).
        self.overflow = maxrec == 0
        self._reader = reader
        self._pending: pa.RecordBatch | None = None
        self._done = maxrec == 0

    def _next_nonempty(self) -> pa.RecordBatch | None:
        if self._pending is not None:
            batch, self._pending = self._pending, None
            return batch
        while not self._done:
            try:
                batch = self._reader.read_next_batch()
            except StopIteration:
                self._done = True
                return None
            if batch.num_rows:
                return batch
        return None

    def first(self) -> pa.RecordBatch | None:
        """The first non-empty batch, without consuming it (``None``: no rows, or maxrec=0)."""
        if self._pending is None:
            self._pending = self._next_nonempty()
        return self._pending

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        if self.maxrec == 0:
            return
        while True:
            limit = None if self.maxrec is None else self.maxrec - self.rows
            if limit == 0:
                self.overflow = self._next_nonempty() is not None
                self._done = True
                return
            batch = self._next_nonempty()
            if batch is None:
                return
            if limit is not None and batch.num_rows > limit:
                self.overflow = True
                self._done = True
                self.rows += limit
                yield batch.slice(0, limit)
                return
            self.rows += batch.num_rows
            yield batch
