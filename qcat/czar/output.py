"""Write a query result to a file: Parquet, CSV, FITS or VOTable (by extension)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from astropy.table import MaskedColumn, Table

from qcat.czar.resolve import OutputColumn
from qcat.errors import ConfigError

FORMATS = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".fits": "fits",
    ".vot": "votable",
    ".xml": "votable",
}


def output_format(path: Path) -> str:
    """The format the file name asks for; :class:`ConfigError` for an unknown one."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(
            f"{path}: unknown output format {path.suffix!r}; use one of {', '.join(FORMATS)}"
        )
    return fmt


def write_result(
    reader: pa.RecordBatchReader, columns: tuple[OutputColumn, ...], path: Path
) -> int:
    """Write the stream to ``path``; return the number of rows.

    Parquet and CSV are written batch by batch; FITS and VOTable (astropy)
    need the whole table in memory.
    """
    fmt = output_format(path)
    rows = 0
    if fmt == "parquet":
        with pq.ParquetWriter(path, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
        return rows
    if fmt == "csv":
        with pacsv.CSVWriter(path, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
        return rows
    table = reader.read_all()
    astropy_table(table, columns).write(
        path, format="fits" if fmt == "fits" else "votable", overwrite=True
    )
    return table.num_rows


def astropy_table(table: pa.Table, columns: tuple[OutputColumn, ...]) -> Table:
    """An astropy Table with units and descriptions from the catalog; NULLs masked."""
    out = Table()
    for i, (field, column) in enumerate(zip(table.schema, columns, strict=False)):
        values = table.column(i)
        if pa.types.is_list(field.type) or pa.types.is_fixed_size_list(field.type):
            data = np.array([v if v is not None else [] for v in values.to_pylist()], dtype=object)
            mask = np.zeros(len(data), dtype=bool)
        else:
            mask = values.is_null().to_numpy(zero_copy_only=False)
            data = values.fill_null(_fill(field.type)).to_numpy(zero_copy_only=False)
        spec = column.column
        name = column.name if column.name not in out.colnames else f"{column.name}_{i}"
        out[name] = MaskedColumn(
            data,
            mask=mask,
            unit=(spec.unit or None) if spec else None,
            description=spec.description if spec else None,
        )
    return out


def _fill(arrow_type: pa.DataType) -> object:
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return ""
    if pa.types.is_boolean(arrow_type):
        return False
    if pa.types.is_integer(arrow_type):
        return 0
    return float("nan")
