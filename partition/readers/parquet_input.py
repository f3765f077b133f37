"""Parquet input: streamed by row group with pyarrow, memory bounded by the batch size."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from partition.readers.input_file import InputFile, reason


class ParquetInput(InputFile):
    """A Parquet file; its footer gives the schema and the row count."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        try:
            self._file = pq.ParquetFile(path)
        except (OSError, pa.ArrowException) as e:
            raise self.error(f"not a readable Parquet file: {reason(e)}") from e

    def schema(self) -> pa.Schema:
        """The Arrow schema stored in the footer."""
        return self._file.schema_arrow

    def count_rows(self) -> int:
        """Row count from the footer (no data is read)."""
        return int(self._file.metadata.num_rows)

    def batches(self, wanted: pa.Schema, batch_rows: int) -> Iterator[tuple[int, pa.RecordBatch]]:
        """Batches of at most ``batch_rows`` rows, decoded one row group at a time."""
        first_row = 0
        pieces = self._file.iter_batches(batch_size=batch_rows, use_pandas_metadata=False)
        while True:
            try:
                batch = next(pieces)
            except StopIteration:
                return
            except (OSError, pa.ArrowException) as e:
                raise self.error(
                    f"cannot read the data from row {first_row} on: {reason(e)}"
                ) from e
            yield first_row, batch
            first_row += batch.num_rows
