"""Result columns as every writer sees them: a VOTable type for each Arrow column.

The reader's Arrow type decides the physical type; the catalog's metadata
(:class:`~qcat.czar.resolve.OutputColumn`) adds name, unit, UCD,
description, the geometry xtype and whether text is Unicode. The mapping
(VOTable 1.4 has no signed byte and no unsigned types above one byte, so
those widen to the next signed type, which also leaves a null value no
datum can take):

| Arrow | VOTable |
| --- | --- |
| bool | boolean |
| int8, uint8, int16 | short |
| uint16, int32 | int |
| uint32, int64, uint64 | long (uint64 above 2**63-1 is an error) |
| float16, float32 | float |
| decimal with scale 0 (DuckDB's HUGEINT sums) | long (a value above 2**63-1 is an error) |
| float64, other decimals | double |
| string (ASCII) | char, arraysize * |
| string (Felis unicode, or non-ASCII in the first batch) | unicodeChar, arraysize * |
| timestamp, date | char, arraysize *, xtype timestamp (ISO 8601, UTC) |
| list / fixed-size list of numbers | the element type, arraysize n or * |
| POINT / CIRCLE / POLYGON | double, arraysize 2 / 3 / *, xtype point / circle / polygon |
| binary | unsignedByte, arraysize * |
| anything else | char, arraysize * (its text form) |
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from qcat.czar.errors import QueryError
from qcat.czar.resolve import OutputColumn

Kind = Literal["boolean", "integer", "float", "text", "array", "blob"]

#: VOTable datatype -> big-endian numpy dtype of one element.
ELEMENT_DTYPES: dict[str, str] = {
    "boolean": "u1",
    "unsignedByte": "u1",
    "short": ">i2",
    "int": ">i4",
    "long": ">i8",
    "float": ">f4",
    "double": ">f8",
    "char": "u1",
    "unicodeChar": ">u2",
}

_ARROW_OF = {
    "short": pa.int16(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "unsignedByte": pa.uint8(),
}

#: Geometry xtype -> fixed number of doubles (None: variable).
GEOMETRY_SIZES: dict[str, int | None] = {"point": 2, "circle": 3, "polygon": None}

#: Integer VOTable datatype -> (minimum, maximum).
_INTEGER_RANGES = {
    "unsignedByte": (0, 2**8 - 1),
    "short": (-(2**15), 2**15 - 1),
    "int": (-(2**31), 2**31 - 1),
    "long": (-(2**63), 2**63 - 1),
}

_NCNAME_BAD = re.compile(r"[^A-Za-z0-9_.\-]")


@dataclass(frozen=True)
class ResultColumn:
    """One output column with its VOTable description."""

    #: Unique (case-insensitively) name of the column in every format.
    name: str
    #: XML ID: an NCName, unique in the document.
    id: str
    kind: Kind
    #: VOTable datatype.
    datatype: str
    #: What the values are converted to before encoding.
    arrow_type: pa.DataType
    #: VOTable arraysize (``None`` for scalars).
    arraysize: str | None = None
    xtype: str | None = None
    unit: str | None = None
    ucd: str | None = None
    #: Data-model concept (e.g. an ObsCore utype) from the catalog.
    utype: str | None = None
    description: str | None = None
    #: Elements per cell of a fixed-size array column.
    count: int | None = None

    @property
    def element_dtype(self) -> np.dtype[Any]:
        """Big-endian numpy dtype of one element (one character unit for text)."""
        return np.dtype(ELEMENT_DTYPES[self.datatype])

    @property
    def null_value(self) -> int | None:
        """Magic null of an integer column (BINARY): the type's minimum, outside any datum."""
        if self.kind != "integer":
            return None
        return integer_range(self.datatype)[0]

    @property
    def variable(self) -> bool:
        """Whether cells have a variable number of elements (a length prefix in BINARY)."""
        return self.arraysize is not None and self.arraysize.endswith("*")


def integer_range(datatype: str) -> tuple[int, int]:
    """Smallest and largest value of an integer VOTable datatype."""
    return _INTEGER_RANGES[datatype]


def result_columns(
    schema: pa.Schema,
    columns: Sequence[OutputColumn],
    first: pa.RecordBatch | None = None,
) -> list[ResultColumn]:
    """Describe the reader's columns; ``first`` (the first batch, if any) decides char vs
    unicodeChar for text the catalog does not declare Unicode.

    ``columns`` gives the catalog metadata by position; a column without one is
    described from its Arrow type alone.
    """
    names = _unique([_name(f, columns, i) for i, f in enumerate(schema)])
    ids = _unique([_ncname(n) for n in names], case_sensitive=True)
    out = []
    for i, field in enumerate(schema):
        meta = columns[i] if i < len(columns) else None
        sample = first.column(i) if first is not None else None
        out.append(_describe(field.type, meta, sample, names[i], ids[i]))
    return out


def _name(field: pa.Field, columns: Sequence[OutputColumn], i: int) -> str:
    return columns[i].name if i < len(columns) and columns[i].name else field.name or f"col{i + 1}"


def _unique(names: list[str], *, case_sensitive: bool = False) -> list[str]:
    seen: set[str] = set()
    out = []
    for name in names:
        candidate, n = name, 1
        while (candidate if case_sensitive else candidate.lower()) in seen:
            n += 1
            candidate = f"{name}_{n}"
        seen.add(candidate if case_sensitive else candidate.lower())
        out.append(candidate)
    return out


def _ncname(name: str) -> str:
    ident = _NCNAME_BAD.sub("_", name)
    return ident if ident[:1].isalpha() or ident[:1] == "_" else f"_{ident}"


def _describe(
    t: pa.DataType,
    meta: OutputColumn | None,
    sample: pa.Array | pa.ChunkedArray | None,
    name: str,
    ident: str,
) -> ResultColumn:
    spec = meta.column if meta is not None else None
    xtype = meta.xtype if meta is not None else None
    # A declared xtype (ObsCore s_region: adql:REGION) describes the stored text as is.
    declared_xtype = spec.xtype if spec is not None and xtype is None else None
    base = ResultColumn(
        name=name,
        id=ident,
        kind="text",
        datatype="char",
        arrow_type=pa.large_string(),
        arraysize="*",
        unit=spec.unit if spec else None,
        ucd=spec.ucd if spec else None,
        utype=spec.utype if spec else None,
        description=spec.description if spec else None,
    )
    if pa.types.is_dictionary(t):
        t = t.value_type
    if xtype in GEOMETRY_SIZES and _is_list(t):
        count = GEOMETRY_SIZES[xtype]
        return replace(
            base,
            kind="array",
            datatype="double",
            arraysize=str(count) if count else "*",
            xtype=xtype,
            count=count,
            arrow_type=_list_type(pa.float64(), count),
        )
    if pa.types.is_boolean(t):
        return replace(
            base, kind="boolean", datatype="boolean", arraysize=None, arrow_type=pa.bool_()
        )
    scalar = _numeric_datatype(t)
    if scalar is not None:
        kind: Kind = "integer" if scalar in ("short", "int", "long") else "float"
        return replace(
            base, kind=kind, datatype=scalar, arraysize=None, arrow_type=_ARROW_OF[scalar]
        )
    element = _numeric_datatype(t.value_type) if _is_list(t) else None
    if element is not None:
        count = t.list_size if pa.types.is_fixed_size_list(t) else None
        return replace(
            base,
            kind="array",
            datatype=element,
            arraysize=str(count) if count else "*",
            xtype=xtype,
            count=count,
            arrow_type=_list_type(_ARROW_OF[element], count),
        )
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return replace(base, kind="blob", datatype="unsignedByte", arrow_type=pa.large_binary())
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return replace(base, xtype="timestamp")
    unicode = (spec is not None and spec.datatype == "unicode") or (
        sample is not None and _has_non_ascii(to_text(sample))
    )
    return replace(
        base, datatype="unicodeChar" if unicode else "char", xtype=xtype or declared_xtype
    )


def _is_list(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_list(t)
        or pa.types.is_large_list(t)
        or pa.types.is_fixed_size_list(t)
        or pa.types.is_list_view(t)
        or pa.types.is_large_list_view(t)
    )


def _list_type(element: pa.DataType, count: int | None) -> pa.DataType:
    return pa.list_(element, count) if count else pa.large_list(element)


def _numeric_datatype(t: pa.DataType) -> str | None:
    if pa.types.is_int8(t) or pa.types.is_uint8(t) or pa.types.is_int16(t):
        return "short"
    if pa.types.is_uint16(t) or pa.types.is_int32(t):
        return "int"
    if pa.types.is_uint32(t) or pa.types.is_int64(t) or pa.types.is_uint64(t):
        return "long"
    if pa.types.is_decimal(t) and t.scale == 0:
        return "long"  # DuckDB's HUGEINT sums; one too large for 64 bits is an error
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return "float"
    if pa.types.is_float64(t) or pa.types.is_decimal(t):
        return "double"
    return None


def _has_non_ascii(values: pa.Array) -> bool:
    return pc.all(pc.string_is_ascii(values)).as_py() is False


# -- values ------------------------------------------------------------------------------


def to_text(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Any column as ``large_string`` (timestamps as DALI ISO 8601 in UTC), nulls kept."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    t = values.type
    if pa.types.is_dictionary(t):
        values = values.dictionary_decode()
        t = values.type
    if pa.types.is_timestamp(t):
        if t.tz is not None:
            values = values.cast(pa.timestamp(t.unit))
        return pc.strftime(values, "%Y-%m-%dT%H:%M:%S").cast(pa.large_string())
    if pa.types.is_date(t):
        return pc.strftime(values, "%Y-%m-%d").cast(pa.large_string())
    try:
        return values.cast(pa.large_string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return pa.array(
            [None if v is None else str(v) for v in values.to_pylist()], pa.large_string()
        )


def column_values(column: ResultColumn, values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``values`` converted to ``column.arrow_type`` (see the module's table), nulls kept."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if column.kind == "text":
        return to_text(values)
    if values.type == column.arrow_type:
        return values
    if column.kind == "array" and (
        pa.types.is_list_view(values.type) or pa.types.is_large_list_view(values.type)
    ):
        values = values.cast(pa.large_list(values.type.value_type))
    try:
        return values.cast(column.arrow_type)
    except pa.ArrowInvalid as e:
        raise QueryError(
            f"column {column.name!r} cannot be written as {column.datatype}: {e}"
        ) from None
