"""The demo tables' shape: the packaged Felis schema and batches that follow it."""

from __future__ import annotations

import functools
from importlib.resources import files
from pathlib import Path

import numpy as np
import pyarrow as pa

from qcat.errors import ConfigError, SchemaError
from qcat.schema import load_felis

OBJECT_TABLE = "demo.Object"
SOURCE_TABLE = "demo.Source"
SCHEMA_FILE = "demo.yaml"


def schema_path() -> Path:
    """Path of the packaged Felis schema of the demo tables (demo.yaml)."""
    resource = files("qcat.demo").joinpath(SCHEMA_FILE)
    if not isinstance(resource, Path):
        raise ConfigError(
            f"qcat.demo/{SCHEMA_FILE} is not a file on disk; install qcat as a directory, "
            "not a zip archive"
        )
    return resource


@functools.cache
def table_schema(qualified_name: str) -> pa.Schema:
    """Arrow schema of ``demo.Object`` or ``demo.Source`` from the packaged Felis file."""
    return load_felis(schema_path())[qualified_name].arrow_schema()


def char_array(codes: np.ndarray, letters: tuple[str, ...]) -> pa.Array:
    """A one-character string array: ``letters[codes[k]]`` for each row."""
    dictionary = pa.array(letters, pa.string())
    indices = pa.array(codes.astype(np.int8), pa.int8())
    return pa.DictionaryArray.from_arrays(indices, dictionary).cast(pa.string())


def assemble_batch(qualified_name: str, columns: dict[str, pa.Array]) -> pa.RecordBatch:
    """Put generated columns in schema order, with the schema's types and nullability."""
    schema = table_schema(qualified_name)
    missing = [f.name for f in schema if f.name not in columns]
    if missing:
        raise SchemaError(
            f"{schema_path()}: {qualified_name} columns {', '.join(missing)} are not generated"
        )
    arrays = [columns[f.name].cast(f.type) for f in schema]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
