"""Conform a file's batches to the table's schema, or say exactly why not.

A :class:`ConformPlan` is built once per file from the columns the file has
and the columns the table wants. Building it checks the names (exact match;
missing and extra columns are listed together) and that each column's type
converts losslessly (see :mod:`partition.readers.lossless`). Applying it to a
batch converts the values, reorders the columns and rejects NULLs in
NOT NULL columns, naming the row and the value at fault.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from partition.readers.lossless import Converter, ValueLoss, first_rejected, lossless_converter
from qcat.errors import InputError, SchemaError
from qcat.schema import TableSpec, felis_type_of

SCHEMA_DISAGREES = "input schema disagrees with the Felis schema"


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names)


def check_column_names(path: str, found: Sequence[str], wanted: Sequence[str]) -> None:
    """Raise one :class:`InputError` listing every naming problem, if there is any.

    Names match exactly; a name that differs only in case is reported as such.
    """
    duplicated = [name for name, n in Counter(found).items() if n > 1]
    if duplicated:
        raise InputError(
            f"column name(s) {_quoted(duplicated)} appear more than once in the file",
            path=path,
            column=duplicated[0] if len(duplicated) == 1 else None,
        )
    found_set, wanted_set = set(found), set(wanted)
    missing = [n for n in wanted if n not in found_set]
    extra = [n for n in found if n not in wanted_set]
    if not missing and not extra:
        return
    problems = []
    if missing:
        problems.append(f"missing column(s) {_quoted(missing)}")
    if extra:
        problems.append(f"extra column(s) not in the schema {_quoted(extra)}")
    extra_by_folded = {n.casefold(): n for n in extra}
    for name in missing:
        in_file = extra_by_folded.get(name.casefold())
        if in_file is not None:
            problems.append(
                f"the file's {in_file!r} differs from the schema's {name!r} only in case "
                "(names must match exactly)"
            )
    culprits = missing + extra
    raise InputError(
        f"{SCHEMA_DISAGREES}: {'; '.join(problems)}",
        path=path,
        column=culprits[0] if len(culprits) == 1 else None,
    )


def describe_type(felis: str | None, arrow_type: pa.DataType) -> str:
    """``int (int32)``: the Felis name of a stored type with its Arrow type."""
    if not felis or felis == str(arrow_type):
        return felis or str(arrow_type)
    return f"{felis} ({arrow_type})"


def felis_name(spec: TableSpec | None, field: pa.Field) -> str | None:
    """Felis datatype of a wanted column, from the spec or inferred from its Arrow type."""
    if spec is not None:
        return spec.column(field.name).datatype
    try:
        return felis_type_of(field.type)
    except SchemaError:
        return None


@dataclass(frozen=True)
class ColumnPlan:
    """How one wanted column is made from the file's column of the same name."""

    field: pa.Field
    felis: str | None
    source: pa.DataType
    convert: Converter

    def conform(self, path: str, values: pa.Array, first_row: int) -> pa.Array:
        """Convert ``values`` and check NULLs; errors name the file row."""
        try:
            out = self.convert(values)
        except ValueLoss:
            index = first_rejected(values, self.convert)
            # A converter rejects a whole array only because of one of its values.
            assert index is not None
            raise InputError(
                f"value {values[index].as_py()!r} (file type {self.source}) cannot be stored "
                f"as Felis type {describe_type(self.felis, self.field.type)} without loss",
                path=path,
                row=first_row + index,
                column=self.field.name,
            ) from None
        if not self.field.nullable and out.null_count:
            index = pc.index(pc.is_null(out), True).as_py()
            raise InputError(
                "NULL in a column the Felis schema declares not nullable",
                path=path,
                row=first_row + index,
                column=self.field.name,
            )
        return out


class ConformPlan:
    """The checked recipe that turns a file's batches into the wanted schema."""

    def __init__(self, path: str, wanted: pa.Schema, columns: Sequence[ColumnPlan]) -> None:
        self.path = path
        self.wanted = wanted
        self.columns = tuple(columns)

    @classmethod
    def build(
        cls, path: str, found: pa.Schema, wanted: pa.Schema, spec: TableSpec | None
    ) -> ConformPlan:
        """Check names and types of ``found`` against ``wanted``; raise :class:`InputError`."""
        check_column_names(path, found.names, wanted.names)
        columns = []
        mismatched: list[str] = []
        mismatched_names: list[str] = []
        for field in wanted:
            source = found.field(field.name).type
            felis = felis_name(spec, field)
            convert = lossless_converter(source, field.type)
            if convert is None:
                mismatched.append(
                    f"{field.name!r} is {source} in the file but the Felis schema says "
                    f"{describe_type(felis, field.type)}"
                )
                mismatched_names.append(field.name)
                continue
            columns.append(ColumnPlan(field, felis, source, convert))
        if mismatched:
            raise InputError(
                f"{SCHEMA_DISAGREES}: column types do not convert without loss: "
                + "; ".join(mismatched),
                path=path,
                column=mismatched_names[0] if len(mismatched_names) == 1 else None,
            )
        return cls(path, wanted, columns)

    def apply(self, batch: pa.RecordBatch, first_row: int) -> pa.RecordBatch:
        """``batch`` (file columns) as a batch of the wanted schema."""
        arrays = [
            plan.conform(self.path, batch.column(plan.field.name), first_row)
            for plan in self.columns
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=self.wanted)
