"""VOTable input, parsed by astropy.io.votable.

Limit: astropy parses a whole VOTable document into memory before the first
batch is produced, so a VOTable input must fit in memory (VOTables are
usually service results and uploads, not bulk catalogs; use Parquet, CSV or
FITS for those). Batches are then slices of the parsed table.

Conventions:

- The table is the first TABLE in the document, or the ``table_index``-th
  (0-based, in document order across RESOURCEs).
- Scalar fields of datatype boolean, bit, unsignedByte, short, int, long,
  float, double, and char/unicodeChar strings are supported; VOTable has no
  signed byte, so ``unsignedByte`` reads as uint8.
- Masked (null) values are NULL. VOTable's float null is NaN and astropy masks
  it, so NaN reads as NULL.
- TABLEDATA cannot tell an empty string from a null one: an empty string is
  NULL when the wanted column is nullable and the empty string otherwise.
  astropy strips the white space around TABLEDATA cell values, so strings
  lose leading and trailing spaces.
- A value astropy would silently change (an unparsable float taken as empty,
  an integer out of range, a string longer than its arraysize) is an error.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from astropy.io.votable import exceptions as vo_exceptions
from astropy.io.votable import parse

from partition.readers.input_file import InputFile, reason

_ARROW_TYPES: dict[str, pa.DataType] = {
    "boolean": pa.bool_(),
    "bit": pa.bool_(),
    "unsignedByte": pa.uint8(),
    "short": pa.int16(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "char": pa.string(),
    "unicodeChar": pa.string(),
}
#: astropy warnings that mean a value was replaced rather than read.
_VALUE_CHANGED = (
    vo_exceptions.W30,  # unparsable float treated as empty
    vo_exceptions.W31,  # NaN in an integer field
    vo_exceptions.W36,  # null value of the wrong type replaced by 0
    vo_exceptions.W46,  # string longer than its arraysize, truncated
    vo_exceptions.W51,  # integer out of range for its field
)


def _is_scalar(field: Any) -> bool:
    if field.datatype in ("char", "unicodeChar"):
        return True
    return field.arraysize in (None, "1")


class VotableInput(InputFile):
    """One TABLE of a VOTable document, held in memory."""

    def __init__(self, path: Path, table_index: int = 0) -> None:
        super().__init__(path)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                document = parse(str(path), verify="warn")
        except Exception as e:  # expat, astropy's E-codes, ValueError: all mean a bad file
            raise self.error(f"not a readable VOTable: {reason(e)}") from e
        for warning in caught:
            if isinstance(warning.message, _VALUE_CHANGED):
                raise self.error(f"a value cannot be read: {reason(warning.message)}")
        tables = list(document.iter_tables())
        if not tables:
            raise self.error("the document has no TABLE")
        if not 0 <= table_index < len(tables):
            raise self.error(
                f"no TABLE with index {table_index}; the document has {len(tables)} (0-based)"
            )
        table = tables[table_index]
        unsupported = [
            f"{f.name!r} ({f.datatype}, arraysize {f.arraysize})"
            for f in table.fields
            if f.datatype not in _ARROW_TYPES or not _is_scalar(f)
        ]
        if unsupported:
            raise self.error(
                "field(s) that cannot be ingested (only scalar boolean, bit, unsignedByte, "
                "short, int, long, float, double and char/unicodeChar strings): "
                + ", ".join(unsupported)
            )
        self._schema = pa.schema(
            [pa.field(f.name or f.ID, _ARROW_TYPES[f.datatype]) for f in table.fields]
        )
        array = table.array
        self._values = [np.ma.getdata(array[name]) for name in array.dtype.names]
        self._masks = [np.ma.getmaskarray(array[name]) for name in array.dtype.names]
        self._rows = len(array)

    def schema(self) -> pa.Schema:
        """FIELD names with the Arrow types of their datatypes."""
        return self._schema

    def batches(self, wanted: pa.Schema, batch_rows: int) -> Iterator[tuple[int, pa.RecordBatch]]:
        """Slices of the parsed table of at most ``batch_rows`` rows."""
        nullable = {f.name: f.nullable for f in wanted}
        columns = list(zip(self._schema, self._values, self._masks, strict=True))
        for start in range(0, self._rows, batch_rows):
            stop = start + batch_rows
            arrays = [
                self._column(field, values[start:stop], mask[start:stop], start, nullable)
                for field, values, mask in columns
            ]
            yield start, pa.RecordBatch.from_arrays(arrays, schema=self._schema)

    def _column(
        self,
        field: pa.Field,
        values: np.ndarray[Any, Any],
        mask: np.ndarray[Any, Any],
        first_row: int,
        nullable: dict[str, bool],
    ) -> pa.Array:
        try:
            column = pa.array(values, type=field.type, mask=mask)
        except (pa.ArrowException, TypeError, ValueError) as e:
            raise self.error(
                f"rows {first_row} to {first_row + len(values) - 1} do not convert to "
                f"{field.type}: {reason(e)}",
                column=field.name,
            ) from e
        if pa.types.is_string(field.type) and nullable.get(field.name, True):
            column = pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column)
        return column
