"""What a query's conditions say about where one table's answers can be.

Two kinds of facts prune the chunks a query reads:

- a spatial one: the row's position lies in a constant region
  (``CONTAINS(POINT(t.ra, t.dec), CIRCLE/BOX/POLYGON) = 1``,
  ``DISTANCE(POINT(t.ra, t.dec), POINT(c)) < r``, ``ANGDIST(...) < r``, and
  ORs of them); only a director table's main position counts, since that is
  what the table is partitioned by;
- a key one: ``t.key = v`` or ``t.key IN (v, ...)`` on the director key (or
  on a child's foreign key to it), answered by the director index.

Only conditions that every answer row must satisfy are used: the AND-ed
terms of a WHERE clause (and of an inner join's ON).

:func:`row_filter` turns the spatial facts into cheap conditions added to a
chunk query ahead of the exact test: a ``_healpix_29`` range (Parquet row
groups outside it are skipped) and, for circles, a declination band (a plain
column comparison DuckDB applies inside the scan, so the exact spherical test
only runs on rows near the region).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import cast

import numpy as np
from sqlglot import exp

from qcat.czar.adql.expressions import (
    AdqlCircle,
    AdqlContains,
    AdqlDistance,
    AdqlIntersects,
    AdqlPoint,
    QcatAngDist,
)
from qcat.czar.catalog import INTEGER_TYPES, TableSnapshot
from qcat.czar.constants import (
    Region,
    constant_number,
    constant_point,
    constant_region,
    geometry,
)
from qcat.geometry import Circle, region_ranges
from qcat.geometry.coverage import limit_ranges, merge_ranges

#: Order-29 ranges describing a region for chunk selection.
COVERAGE_RANGES = 256
#: Cells refined per HEALPix order while covering a region: enough to follow a
#: region of a few degrees to order 10-11 (chunks are order 10 at most by
#: default), a quarter of the geometry default, since planning pays it per query.
COVERAGE_BUDGET = 1024
#: ``_healpix_29`` ranges in a chunk query's row filter. Few: every range costs
#: DuckDB planning and a comparison per row, and the exact test follows anyway;
#: more than one keeps disjoint regions (an OR of cones) from one huge envelope
#: (measurements in ``docs/query-engine.md``).
ROW_RANGES = 4
#: Widening of a declination band (degrees), far above the rounding of the exact test.
DEC_SLACK = 1e-7


@dataclass(frozen=True)
class TableConstraints:
    """Pruning facts about one table reference (``None``: no restriction known)."""

    regions: tuple[Region, ...] | None = None
    keys: tuple[object, ...] | None = None
    #: Values of a child table's own indexed key (``sourceId``; :func:`own_key_column`).
    own_keys: tuple[object, ...] | None = None

    @cached_property
    def ranges(self) -> np.ndarray | None:
        """``_healpix_29`` ranges covering the regions, computed once (None: no regions).

        They locate a director's rows only; a child's rows carry their director's index.
        """
        if self.regions is None:
            return None
        return merge_ranges(
            np.concatenate(
                [region_ranges(r, COVERAGE_RANGES, budget=COVERAGE_BUDGET) for r in self.regions]
            )
        )


def row_filter(
    alias: str, constraints: TableConstraints, dec_column: str | None, healpix_column: str
) -> list[exp.Expression]:
    """Cheap conditions every row of ``alias`` in its regions meets (none without regions).

    ``dec_column`` is the table's declination column and ``healpix_column``
    its order-29 index column. The exact test stays in the query; these only
    let DuckDB skip row groups and rows early.
    """
    ranges = constraints.ranges
    if ranges is None:
        return []
    out = [healpix_condition(exp.column(healpix_column, table=alias), ranges)]
    return out + dec_band_filter(alias, dec_column, constraints.regions or ())


def dec_band_filter(
    alias: str, dec_column: str | None, regions: tuple[Region, ...]
) -> list[exp.Expression]:
    """``alias.dec_column BETWEEN lo AND hi`` for the declination band of ``regions``
    (none when they have no band or the table no such column)."""
    band = dec_band(regions)
    if band is None or not dec_column:
        return []
    column = exp.column(dec_column.lower(), table=alias)
    return [exp.Between(this=column, low=double_literal(band[0]), high=double_literal(band[1]))]


def healpix_condition(column: exp.Column, ranges: np.ndarray) -> exp.Expression:
    """``column`` in one of at most :data:`ROW_RANGES` ranges covering ``ranges`` (a tree).

    Half-open ``[start, stop)`` rows become ``BETWEEN start AND stop - 1``;
    no ranges give ``FALSE``.
    """
    r = limit_ranges(ranges, ROW_RANGES) if len(ranges) else ranges
    if len(r) == 0:
        return exp.false()
    terms = [
        exp.Between(
            this=column.copy(),
            low=exp.Literal.number(int(lo)),
            high=exp.Literal.number(int(hi) - 1),
        )
        for lo, hi in r.tolist()
    ]
    if len(terms) == 1:
        return terms[0]
    return exp.Paren(this=exp.or_(*terms, copy=False))


def dec_band(regions: tuple[Region, ...]) -> tuple[float, float] | None:
    """Declinations every point of the circles ``regions`` lies between (None: not all circles,
    or no band narrower than the sphere)."""
    if not regions or not all(isinstance(r, Circle) for r in regions):
        return None
    lo = min(r.dec - r.radius for r in regions if isinstance(r, Circle)) - DEC_SLACK
    hi = max(r.dec + r.radius for r in regions if isinstance(r, Circle)) + DEC_SLACK
    if lo <= -90.0 and hi >= 90.0:
        return None
    return max(lo, -90.0), min(hi, 90.0)


def double_literal(value: float) -> exp.Expression:
    """A DOUBLE literal (``1.5e0``; DuckDB reads ``1.5`` as a DECIMAL)."""
    from qcat.geometry.sql import literal

    # sqlglot turns a negative number literal into Neg(float text), dropping the exponent.
    magnitude = exp.Literal.number(literal(abs(value)))
    return exp.Neg(this=magnitude) if value < 0 else magnitude


def conjuncts(condition: exp.Expression | None) -> Iterator[exp.Expression]:
    """The AND-ed terms of ``condition`` (parentheses removed)."""
    if condition is None:
        return
    if isinstance(condition, (exp.Where, exp.Having)):
        condition = condition.this
    node = (
        cast(exp.Expression, condition.unnest()) if isinstance(condition, exp.Paren) else condition
    )
    if isinstance(node, exp.And):
        yield from conjuncts(node.this)
        yield from conjuncts(node.expression)
    else:
        yield node


def constraints_for(
    alias: str, table: TableSnapshot, terms: list[exp.Expression]
) -> TableConstraints:
    """The pruning facts ``terms`` (AND-ed conditions) give about table ``alias``."""
    regions: tuple[Region, ...] | None = None
    keys: tuple[object, ...] | None = None
    own_keys: tuple[object, ...] | None = None
    own_column = own_key_column(table)
    for term in terms:
        # A child's regions are on its own positions, not on its chunks' pixels:
        # the planner prunes those by the chunks' position bounds instead.
        if table.spec.kind in ("director", "child"):
            found = _regions(term, alias, table)
            # Several spatial terms all hold: any one of them prunes correctly.
            if found is not None and (regions is None or _smaller(found, regions)):
                regions = found
        keys = _both(keys, _keys(term, alias, table, key_column(table)))
        if own_column is not None:
            own_keys = _both(own_keys, _keys(term, alias, table, own_column))
    return TableConstraints(regions, keys, own_keys)


def _both(
    known: tuple[object, ...] | None, found: tuple[object, ...] | None
) -> tuple[object, ...] | None:
    """The keys two AND-ed terms allow (``None``: no restriction)."""
    if found is None:
        return known
    return found if known is None else tuple(k for k in known if k in found)


def _smaller(a: tuple[Region, ...], b: tuple[Region, ...]) -> bool:
    from qcat.geometry import area_sq_deg

    return sum(area_sq_deg(r) for r in a) < sum(area_sq_deg(r) for r in b)


# -- spatial ---------------------------------------------------------------------


def _regions(term: exp.Expression, alias: str, table: TableSnapshot) -> tuple[Region, ...] | None:
    node = term.unnest() if isinstance(term, exp.Paren) else term
    if isinstance(node, exp.Or):
        left = _regions(node.this, alias, table)
        right = _regions(node.expression, alias, table)
        return None if left is None or right is None else left + right
    if isinstance(node, exp.EQ):
        for a, b in ((node.this, node.expression), (node.expression, node.this)):
            if isinstance(a, (AdqlContains, AdqlIntersects)) and _is_one(b):
                region = _predicate_region(a, alias, table)
                return None if region is None else (region,)
    if isinstance(node, (exp.LT, exp.LTE, exp.GT, exp.GTE)):
        small, big = (
            (node.this, node.expression)
            if isinstance(node, (exp.LT, exp.LTE))
            else (node.expression, node.this)
        )
        radius = constant_number(big)
        centre = _distance_centre(small, alias, table)
        if radius is not None and centre is not None and radius > 0:
            return (geometry(Circle, centre[0] % 360.0, centre[1], min(radius, 180.0)),)
    return None


def _predicate_region(
    node: AdqlContains | AdqlIntersects, alias: str, table: TableSnapshot
) -> Region | None:
    """The constant region a CONTAINS or INTERSECTS keeps the table's positions in.

    ``CONTAINS(POINT(t.ra, t.dec), region)``, ``INTERSECTS`` of the position
    and a region (either way round: with a point it means CONTAINS), and the
    cone written around the rows instead of the centre,
    ``CONTAINS(POINT(c), CIRCLE(t.ra, t.dec, r))``: the same rows as
    ``CONTAINS(POINT(t.ra, t.dec), CIRCLE(c, r))``; and a circle around the rows
    meeting a constant one, ``INTERSECTS(CIRCLE(t.ra, t.dec, r1), CIRCLE(c, r2))``
    (an error circle touching a field): the positions within ``r1 + r2`` of c.
    """
    orders = [(node.this, node.expression)]
    if isinstance(node, AdqlIntersects):  # symmetric
        orders.append((node.expression, node.this))
    for point, region in orders:
        if _is_position(point, alias, table):
            return constant_region(region)
        if isinstance(region, AdqlCircle) and _is_position(region.args["center"], alias, table):
            radius = constant_number(region.args["radius"])
            if isinstance(node, AdqlIntersects) and isinstance(point, AdqlCircle):
                # Two circles meet when their centres are within the sum of the radii.
                centre, other = (
                    constant_point(point.args["center"]),
                    constant_number(point.args["radius"]),
                )
                if centre is None or radius is None or other is None:
                    continue
                if min(radius, other) < 0.0 or radius + other >= 180.0:
                    return None  # the whole sky, or a radius for the query to judge
                return geometry(Circle, centre.ra, centre.dec, radius + other)
            centre = constant_point(point)
            if centre is not None and radius is not None:
                return geometry(Circle, centre.ra, centre.dec, radius)
    return None


def _is_one(node: exp.Expression) -> bool:
    return constant_number(node) == 1.0


def _column_is(node: exp.Expression, alias: str, name: str | None) -> bool:
    return (
        name is not None
        and isinstance(node, exp.Column)
        and node.table == alias
        and node.name == name.lower()
    )


def _is_position(node: exp.Expression, alias: str, table: TableSnapshot) -> bool:
    ra, dec = table.spec.own_position or (None, None)
    return (
        isinstance(node, AdqlPoint)
        and _column_is(node.args["coord1"], alias, ra)
        and _column_is(node.args["coord2"], alias, dec)
    )


def _distance_centre(
    node: exp.Expression, alias: str, table: TableSnapshot
) -> tuple[float, float] | None:
    """The constant centre of ``DISTANCE(position of alias, constant point)``."""
    if isinstance(node, AdqlDistance):
        pairs = [(node.this, node.expression), (node.expression, node.this)]
        for p, q in pairs:
            if _is_position(p, alias, table) and isinstance(q, AdqlPoint):
                ra, dec = constant_number(q.args["coord1"]), constant_number(q.args["coord2"])
                if ra is not None and dec is not None:
                    return ra, dec
    if isinstance(node, QcatAngDist):
        a = (node.args["ra1"], node.args["dec1"])
        b = (node.args["ra2"], node.args["dec2"])
        ra_column, dec_column = table.spec.own_position or (None, None)
        for (ra_p, dec_p), (ra_q, dec_q) in ((a, b), (b, a)):
            if _column_is(ra_p, alias, ra_column) and _column_is(dec_p, alias, dec_column):
                ra, dec = constant_number(ra_q), constant_number(dec_q)
                if ra is not None and dec is not None:
                    return ra, dec
    return None


# -- keys -------------------------------------------------------------------------


def key_column(table: TableSnapshot) -> str | None:
    """The column whose values the director index maps to chunks, for this table."""
    spec = table.spec
    if spec.kind == "director":
        return spec.director_key
    if spec.kind == "child":
        return spec.director_fk_column
    return None


def own_key_column(table: TableSnapshot) -> str | None:
    """A child table's own key, when an index of its own maps it to chunks."""
    if table.own_key_index_path is None or len(table.spec.primary_key) != 1:
        return None
    return table.spec.primary_key[0]


def _keys(
    term: exp.Expression, alias: str, table: TableSnapshot, column: str | None
) -> tuple[object, ...] | None:
    """The values ``term`` allows for ``alias.column``: ``column = v`` or ``IN (...)``."""
    if column is None:
        return None
    node = term.unnest() if isinstance(term, exp.Paren) else term
    values: list[object | None] = []
    if isinstance(node, exp.EQ):
        for a, b in ((node.this, node.expression), (node.expression, node.this)):
            if _column_is(a, alias, column):
                values = [_key_value(b)]
                break
    elif (
        isinstance(node, exp.In)
        and _column_is(node.this, alias, column)
        and not node.args.get("query")
    ):
        values = [_key_value(v) for v in node.expressions]
    # A key of the column's own kind only: the index is typed, and DuckDB compares
    # other values by casting them, which the index cannot foresee.
    integer = table.column_types.get(column.lower(), "") in INTEGER_TYPES
    keys = [_as_integer(v) if integer else (v if isinstance(v, str) else None) for v in values]
    if keys and all(k is not None for k in keys):
        return tuple(keys)
    return None


def _as_integer(value: object | None) -> int | None:
    """An integer key; a string spelling one is read as it (as SQL casts it), else None."""
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)
    return None


def _key_value(node: exp.Expression) -> object | None:
    if isinstance(node, exp.Literal):
        return node.this if node.is_string else _whole_number(node.this)
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal):
        value = None if node.this.is_string else _whole_number(node.this.this)
        return None if value is None else -value
    return None


def _whole_number(text: str) -> int | None:
    """The integer a numeric literal spells, exactly; None for a fraction.

    Keys are read from the digits, not through a float: survey ids pass 2**53
    (Rubin's objectIds are near 2**60), where a float would name another key.
    """
    try:
        return int(text)
    except ValueError:
        pass
    number = float(text)  # 1e3, 12.0: exact only while a float holds every integer
    return int(number) if number.is_integer() and abs(number) < 2**53 else None
