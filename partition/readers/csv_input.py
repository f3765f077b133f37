"""CSV input: streamed with pyarrow's CSV reader, parsed straight into the wanted types.

Conventions (written down because CSV has none of its own):

- The first line is a header naming the columns; names match the schema exactly.
- ``.tsv`` files are tab-separated; ``.gz`` files are decompressed on the fly.
- An empty unquoted field, ``null`` and ``NULL`` are NULL in every column. A
  quoted field is never NULL, so ``""`` is the empty string and ``"null"`` the
  four-letter string.
- ``nan``/``NaN``/``inf``/``-inf`` are float values, not NULL. Floats are parsed
  to the nearest representable value, so a shortest round-trip decimal (Python's
  ``repr``) or ``%.17g`` comes back bit-identical.
- Booleans are ``true``/``True``/``TRUE``/``1`` and ``false``/``False``/``FALSE``/``0``.
- A quoted value may not contain a line break (each row is one line), which is
  what lets an error give the file's line number. Empty lines are skipped,
  except in a one-column file, where an empty line is a NULL value.
- Without a Felis schema the column types are inferred from the first block
  (a few MB) of rows; a column with no value there is read as strings and a
  date-only column as a timestamp.

pyarrow reports a value it cannot convert without its row, so when a block
fails the file is read again as raw text up to the first bad field, which
then gives the row, the line, the column and the value.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from partition.readers.conform import describe_type
from partition.readers.detect import is_tab_separated
from partition.readers.input_file import InputFile, reason, rebatch
from partition.readers.lossless import Converter, ValueLoss, first_rejected
from qcat.errors import InputError, SchemaError
from qcat.schema import felis_type_of

NULL_VALUES = ["", "null", "NULL"]
TRUE_VALUES = ["true", "True", "TRUE", "1"]
FALSE_VALUES = ["false", "False", "FALSE", "0"]
#: Bytes pyarrow parses at a time; also the sample types are inferred from.
BLOCK_BYTES = 4 << 20
#: Data rows start on line 2, after the header.
_FIRST_DATA_LINE = 2


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _storable(inferred: pa.DataType) -> pa.DataType:
    """The type an inferred CSV column is read as (one a Felis datatype can store)."""
    if pa.types.is_null(inferred) or pa.types.is_time(inferred):
        return pa.string()
    if pa.types.is_date(inferred):
        return pa.timestamp("s")
    return inferred


def _text_parser(target: pa.DataType) -> Converter:
    """Parse raw CSV fields (binary) as ``target`` the way pyarrow's CSV reader does."""
    if pa.types.is_binary(target):
        return lambda values: values

    def parse(values: pa.Array) -> pa.Array:
        try:
            text = pc.cast(values, pa.string())
            if pa.types.is_string(target):
                return text
            if pa.types.is_boolean(target):
                known = pc.is_in(text, pa.array(TRUE_VALUES + FALSE_VALUES))
                if not pc.all(pc.or_(known, pc.is_null(text))).as_py():
                    raise ValueLoss("not a boolean")
                return pc.is_in(text, pa.array(TRUE_VALUES))
            # The CSV reader ignores spaces around numbers and timestamps.
            return pc.cast(pc.utf8_trim(text, " \t"), target, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise ValueLoss(str(e)) from e

    return parse


def _felis_of(t: pa.DataType) -> str | None:
    try:
        return felis_type_of(t)
    except SchemaError:
        return None


class CsvInput(InputFile):
    """A CSV (or TSV) file, optionally gzip-compressed."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._delimiter = "\t" if is_tab_separated(path) else ","
        self._blank_lines_are_rows = False
        with self._open(None) as reader:
            self._inferred = reader.schema
        self._check_header(self._inferred.names)
        # With one column an empty line is a NULL value; with more it can only be noise.
        self._blank_lines_are_rows = len(self._inferred) == 1

    # -- opening ----------------------------------------------------------

    def _options(
        self,
        column_types: dict[str, pa.DataType] | None,
        invalid_rows: list[pacsv.InvalidRow] | None = None,
    ) -> dict[str, Any]:
        """open_csv keyword arguments.

        Given ``invalid_rows`` (when locating an error), rows with the wrong
        number of fields are collected there and the file is read on one
        thread, so pyarrow numbers the rows.
        """
        handler = None
        if invalid_rows is not None:

            def handler(row: pacsv.InvalidRow) -> str:
                invalid_rows.append(row)
                return "error"

        return {
            "read_options": pacsv.ReadOptions(
                block_size=BLOCK_BYTES, use_threads=invalid_rows is None
            ),
            "parse_options": pacsv.ParseOptions(
                delimiter=self._delimiter,
                ignore_empty_lines=not self._blank_lines_are_rows,
                invalid_row_handler=handler,
            ),
            "convert_options": pacsv.ConvertOptions(
                column_types=column_types,
                null_values=NULL_VALUES,
                true_values=TRUE_VALUES,
                false_values=FALSE_VALUES,
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        }

    def _open(self, column_types: dict[str, pa.DataType] | None) -> pacsv.CSVStreamingReader:
        """Open a streaming reader; ``column_types`` None means infer the types."""
        try:
            return pacsv.open_csv(self.path, **self._options(column_types))
        except pa.ArrowInvalid as e:
            if "Empty CSV file" in str(e):
                raise self.error(
                    "the file is empty; a header line naming the columns is required"
                ) from e
            raise self._diagnose(column_types, 0, e) from e
        except (OSError, pa.ArrowException) as e:
            raise self.error(f"cannot read the file: {reason(e)}") from e

    def _check_header(self, names: list[str]) -> None:
        for position, name in enumerate(names, start=1):
            if not name.strip():
                raise self.error(f"the header line has an empty column name at position {position}")
        numeric = [name for name in names if _is_number(name)]
        if numeric:
            raise self.error(
                "the first line must be a header naming the columns, but it holds "
                f"number(s) {', '.join(numeric)}"
            )

    # -- InputFile --------------------------------------------------------

    def schema(self) -> pa.Schema:
        """Header names with types inferred from the first block of rows."""
        return pa.schema([pa.field(f.name, _storable(f.type)) for f in self._inferred])

    def batch_schema(self, wanted: pa.Schema) -> pa.Schema:
        """Header names; the wanted type for wanted columns, else the inferred one."""
        own = self.schema()
        return pa.schema(
            [
                pa.field(
                    name, wanted.field(name).type if name in wanted.names else own.field(name).type
                )
                for name in own.names
            ]
        )

    def batches(self, wanted: pa.Schema, batch_rows: int) -> Iterator[tuple[int, pa.RecordBatch]]:
        """Rows parsed into the wanted types, regrouped into ``batch_rows`` batches."""
        types = {f.name: f.type for f in self.batch_schema(wanted)}
        return rebatch(self._pieces(types), batch_rows)

    def _pieces(self, types: dict[str, pa.DataType]) -> Iterator[pa.RecordBatch]:
        reader = self._open(types)
        rows_ok = 0
        try:
            while True:
                try:
                    piece = reader.read_next_batch()
                except StopIteration:
                    return
                except pa.ArrowInvalid as e:
                    raise self._diagnose(types, rows_ok, e) from e
                except (OSError, pa.ArrowException) as e:
                    raise self.error(
                        f"cannot read the file after row {rows_ok}: {reason(e)}"
                    ) from e
                yield piece
                rows_ok += piece.num_rows
        finally:
            reader.close()

    # -- locating errors --------------------------------------------------

    def _diagnose(
        self, types: dict[str, pa.DataType] | None, rows_ok: int, cause: Exception
    ) -> InputError:
        """Find the row, column and value behind a failed block (read again as text).

        Rows before ``rows_ok`` were read without trouble and are not checked.
        """
        raw_types = {name: pa.binary() for name in types} if types else None
        invalid_rows: list[pacsv.InvalidRow] = []
        row = 0
        try:
            with pacsv.open_csv(self.path, **self._options(raw_types, invalid_rows)) as reader:
                for piece in reader:
                    if types and row + piece.num_rows > rows_ok:
                        found = self._first_bad_field(piece, types, max(0, rows_ok - row))
                        if found is not None:
                            index, column = found
                            return self._bad_value(
                                row + index, column, piece[column][index], types[column]
                            )
                    row += piece.num_rows
        except pa.ArrowInvalid as e:
            if invalid_rows:
                return self._bad_row(invalid_rows[0], row)
            return self.error(f"cannot parse the file after row {row}: {reason(e)}")
        except (OSError, pa.ArrowException) as e:
            return self.error(f"cannot read the file: {reason(e)}")
        return self.error(f"cannot read the file after row {rows_ok}: {reason(cause)}")

    def _first_bad_field(
        self, piece: pa.RecordBatch, types: dict[str, pa.DataType], start: int
    ) -> tuple[int, str] | None:
        """Earliest (row in ``piece``, column) whose text does not parse, from ``start``."""
        best: tuple[int, str] | None = None
        for column in piece.schema.names:
            values = piece.column(column).slice(start)
            index = first_rejected(values, _text_parser(types[column]))
            if index is not None and (best is None or start + index < best[0]):
                best = (start + index, column)
        return best

    def _bad_value(self, row: int, column: str, raw: pa.Scalar, target: pa.DataType) -> InputError:
        text = raw.as_py().decode("utf-8", errors="backslashreplace")
        if pa.types.is_string(target):
            what = "is not valid UTF-8 text"
        else:
            what = f"is not a valid {describe_type(_felis_of(target), target)}"
        return self.error(f"value {text!r} {what}{self._line_note(row)}", row=row, column=column)

    def _bad_row(self, invalid: pacsv.InvalidRow, block_start: int) -> InputError:
        # pyarrow numbers rows from 1 with the header as row 1 and skips empty lines.
        row = invalid.number - _FIRST_DATA_LINE if invalid.number is not None else block_start
        return self.error(
            f"expected {invalid.expected_columns} fields, found {invalid.actual_columns}: "
            f"{invalid.text!r}{self._line_note(row)}",
            row=row,
        )

    def _line_note(self, row: int) -> str:
        line = self._line_number(row)
        return f" (line {line})" if line is not None else ""

    def _line_number(self, row: int) -> int | None:
        """1-based line of data row ``row`` (0-based), counting the header and skipped lines."""
        wanted = row
        with self._open_text() as lines:
            for line_number, line in enumerate(lines, start=1):
                blank = not line.rstrip(b"\r\n")
                if line_number < _FIRST_DATA_LINE or (blank and not self._blank_lines_are_rows):
                    continue
                if wanted == 0:
                    return line_number
                wanted -= 1
        return None

    def _open_text(self) -> io.BufferedIOBase:
        if self.path.name.lower().endswith(".gz"):
            return gzip.open(self.path, "rb")
        return self.path.open("rb")
