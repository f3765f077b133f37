"""Chunks left out by their column statistics: each partition's [min, max] per column.

Ingest records every column's minimum and maximum over each partition file
(from the Parquet footers). A WHERE term comparing a numeric column with a
constant (``r_psfMag < 12``, ``coord_dec BETWEEN 80 AND 90``, ``flags = 4``)
cannot hold anywhere in a chunk whose range lies outside it, so that chunk
gets no task: the scan never starts there, which on a survey of thousands of
chunks is most of the cost of a selective query. Rows are still tested by
the query itself; this only decides which chunks are asked.

NaN: Parquet statistics leave NaN out, and DuckDB lets NaN through
comparisons the statistics rule out (it orders NaN above every number, and
a filter pushed into its Parquet scan even passes NaN for ``x BETWEEN 30
AND 40``, which the expression alone refuses). So only columns that cannot
hold NaN are used: integers, and the position a table is partitioned by
(ingest refuses rows whose position is not finite). Other float columns may
hold NaN, and the statistics do not say whether they do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlglot import exp

from qcat.czar.catalog import INTEGER_TYPES, Chunk, TableSnapshot
from qcat.czar.constants import constant_number

_NUMERIC = INTEGER_TYPES | {"FLOAT", "DOUBLE"}


@dataclass(frozen=True)
class Bounds:
    """What the terms allow a column's values to be: ``low <= value <= high``."""

    low: float = -math.inf
    high: float = math.inf

    def meets(self, minimum: float, maximum: float) -> bool:
        """Whether a value in ``[minimum, maximum]`` can lie within these bounds."""
        return maximum >= self.low and minimum <= self.high


def column_bounds(
    terms: list[exp.Expression], alias: str, table: TableSnapshot
) -> dict[str, Bounds]:
    """The bounds the AND-ed ``terms`` put on ``alias``'s numeric columns (lower-case names).

    Strict comparisons are taken as inclusive: the chunks kept are a superset.
    """
    types = table.column_types
    nan_free = {c for c, t in types.items() if t in INTEGER_TYPES}
    if table.spec.kind != "child" and table.spec.own_position:
        nan_free |= {c.lower() for c in table.spec.own_position}
    out: dict[str, Bounds] = {}

    def narrow(column: str, low: float = -math.inf, high: float = math.inf) -> None:
        if column not in nan_free:
            return  # a NaN the statistics leave out could pass the term
        old = out.get(column, Bounds())
        out[column] = Bounds(max(old.low, low), min(old.high, high))

    for term in terms:
        node = term.unnest() if isinstance(term, exp.Paren) else term
        if isinstance(node, exp.Between):
            column = _numeric_column(node.this, alias, types)
            low, high = constant_number(node.args["low"]), constant_number(node.args["high"])
            if column and low is not None and high is not None:
                narrow(column, low, high)
            continue
        if not isinstance(node, (exp.EQ, exp.LT, exp.LTE, exp.GT, exp.GTE)):
            continue
        for a, b, flipped in (
            (node.this, node.expression, False),
            (node.expression, node.this, True),
        ):
            column, value = _numeric_column(a, alias, types), constant_number(b)
            if column is None or value is None or math.isnan(value):
                continue
            upper = isinstance(node, (exp.LT, exp.LTE)) != flipped  # column < value
            if isinstance(node, exp.EQ):
                narrow(column, value, value)
            elif upper:
                narrow(column, high=value)
            else:
                narrow(column, low=value)
            break
    return out


def chunks_within(chunks: list[Chunk], bounds: dict[str, Bounds]) -> list[Chunk]:
    """The chunks whose statistics meet every one of ``bounds`` (unknown ones are kept)."""
    if not bounds:
        return chunks
    kept = []
    for chunk in chunks:
        ranges = chunk.column_ranges
        if all(column not in ranges or b.meets(*ranges[column]) for column, b in bounds.items()):
            kept.append(chunk)
    return kept


def _numeric_column(node: exp.Expression, alias: str, types: dict[str, str]) -> str | None:
    if isinstance(node, exp.Column) and node.table == alias and types.get(node.name) in _NUMERIC:
        return node.name
    return None
