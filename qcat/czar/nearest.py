"""Nearest rows first: ``TOP k ... ORDER BY DISTANCE(position, a point)`` without a cone.

"The object nearest to these coordinates" is often asked without any
spatial condition, which as written scans every chunk to sort the whole
table by distance. But if at least k rows (TOP plus OFFSET) satisfy the
WHERE within radius r of the point, no row farther than r can be among the
first k. So the engine counts the rows within a small cone, grows the cone
until it holds k, and then runs the query with the cone added: a few
pruned queries instead of a full scan.

The cone added is slightly wider than the one counted (by
:data:`WIDER`, far above rounding): every counted row is then surely inside
it, and every row outside it is surely farther than all of them, whatever
the rounding of the containment test and of DISTANCE near the boundary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from sqlglot import exp

from qcat.czar.adql.expressions import AdqlCircle, AdqlContains, AdqlDistance, AdqlPoint
from qcat.czar.constants import constant_number
from qcat.czar.constraints import conjuncts, constraints_for
from qcat.czar.resolve import OutputColumn, ResolvedQuery, qualified_name
from qcat.czar.split import has_aggregates, limit_value

#: Largest TOP + OFFSET answered this way (beyond it the cones get large anyway).
MAX_ROWS = 10_000
#: The cone the query gets is this much wider than the one counted (relative).
WIDER = 1e-6
#: Past this radius (degrees) the query runs as written.
MAX_RADIUS_DEG = 20.0
#: The first cone is meant to hold this many times the rows wanted (at the table's
#: mean density; the next cone is sized from what the first held).
FIRST_MARGIN = 4.0
SKY_DEG2 = 4.0 * math.pi * (180.0 / math.pi) ** 2


@dataclass(frozen=True)
class NearestQuery:
    """A query asking for the ``rows`` rows nearest to (``ra``, ``dec``)."""

    resolved: ResolvedQuery
    alias: str
    ra_column: str
    dec_column: str
    ra: float
    dec: float
    rows: int

    def first_radius(self) -> float:
        """Degrees: a cone meant to hold a few times ``rows`` at the table's mean density."""
        table = next(iter(self.resolved.tables.values()))
        density = max(table.version.num_rows, 1) / SKY_DEG2
        radius = math.sqrt(FIRST_MARGIN * self.rows / (math.pi * density))
        return min(max(radius, 1.0 / 3600.0), 1.0)

    def next_radius(self, radius: float, found: int) -> float:
        """A wider cone after one that held ``found`` rows (fewer than wanted)."""
        growth = math.sqrt(FIRST_MARGIN * self.rows / max(found, 1))
        return radius * min(max(growth, 2.0), 10.0)

    def counting(self, radius: float) -> ResolvedQuery:
        """``SELECT COUNT(*)`` of the rows the WHERE keeps within ``radius`` degrees."""
        tree = self._with_cone(radius)
        for key in ("order", "limit", "offset"):
            tree.set(key, None)
        tree.set("expressions", [exp.alias_(exp.Count(this=exp.Star()), "n")])
        return ResolvedQuery(tree, self.resolved.tables, (OutputColumn("n"),))

    def within(self, radius: float) -> ResolvedQuery:
        """The query itself, its rows limited to a cone a little wider than ``radius``."""
        return replace(self.resolved, tree=self._with_cone(radius * (1.0 + WIDER)))

    def _with_cone(self, radius: float) -> exp.Select:
        tree = self.resolved.tree.copy()
        assert isinstance(tree, exp.Select)
        cone = exp.EQ(
            this=AdqlContains(
                this=AdqlPoint(
                    coord1=exp.column(self.ra_column, table=self.alias),
                    coord2=exp.column(self.dec_column, table=self.alias),
                ),
                expression=AdqlCircle(
                    center=AdqlPoint(coord1=_number(self.ra), coord2=_number(self.dec)),
                    radius=_number(radius),
                ),
            ),
            expression=exp.Literal.number(1),
        )
        return tree.where(cone, copy=False)


def nearest_query(resolved: ResolvedQuery) -> NearestQuery | None:
    """The query as a :class:`NearestQuery`, when it is one.

    One partitioned table with its own position, alone (no join, no
    subquery); no aggregate, GROUP BY or DISTINCT; a TOP; no region or keys
    in the WHERE already (the query is then cheap as written: TOP 1 in a cone
    is the usual way to ask); and an ORDER BY whose first key is DISTANCE,
    ascending, between the table's position and a constant point (written
    there, or as an output's alias or position).
    """
    tree = resolved.tree
    if not isinstance(tree, exp.Select) or len(resolved.tables) != 1:
        return None
    # The cheap tests first: this runs for every query.
    limit, offset = limit_value(tree, "limit"), limit_value(tree, "offset") or 0
    if limit is None or not 0 < limit + offset <= MAX_ROWS:
        return None
    order = tree.args.get("order")
    if order is None or order.expressions[0].args.get("desc"):
        return None
    distance = _ordering_expression(tree, order.expressions[0].this)
    if not isinstance(distance, AdqlDistance):
        return None
    if tree.args.get("joins") or tree.args.get("distinct") or tree.args.get("with_"):
        return None
    source = tree.args.get("from_")
    table_node = source.this if source is not None else None
    if not isinstance(table_node, exp.Table):
        return None
    table = resolved.tables.get(qualified_name(table_node))
    if table is None or not table.partitioned or table.spec.own_position is None:
        return None
    if has_aggregates(tree) or any(
        isinstance(n, (exp.Subquery, exp.Exists)) for n in tree.walk() if n is not tree
    ):
        return None
    alias = table_node.alias_or_name
    known = constraints_for(alias, table, list(conjuncts(tree.args.get("where"))))
    if known.regions is not None or known.keys is not None or known.own_keys is not None:
        return None  # a cone or keys of its own already keep the query to a few chunks
    ra_column, dec_column = (c.lower() for c in table.spec.own_position)
    for here, there in ((distance.this, distance.expression), (distance.expression, distance.this)):
        if not (isinstance(here, AdqlPoint) and isinstance(there, AdqlPoint)):
            continue
        if here.args["coord1"] != exp.column(ra_column, table=alias):
            continue
        if here.args["coord2"] != exp.column(dec_column, table=alias):
            continue
        ra, dec = constant_number(there.args["coord1"]), constant_number(there.args["coord2"])
        if ra is None or dec is None or not (math.isfinite(ra) and -90.0 <= dec <= 90.0):
            return None
        return NearestQuery(resolved, alias, ra_column, dec_column, ra, dec, limit + offset)
    return None


def _ordering_expression(tree: exp.Select, key: exp.Expression) -> exp.Expression:
    """What ORDER BY ``key`` sorts by: an output named or numbered, or ``key`` itself."""
    if isinstance(key, exp.Literal) and not key.is_string:
        position = int(key.this)
        if 1 <= position <= len(tree.expressions):
            return tree.expressions[position - 1].unalias()
    if isinstance(key, exp.Column) and not key.table:
        for projection in tree.expressions:
            if projection.alias_or_name == key.name and isinstance(projection, exp.Alias):
                return projection.this
    return key


def _number(value: float) -> exp.Expression:
    literal = exp.Literal.number(repr(abs(value)))
    return exp.Neg(this=literal) if value < 0 else literal
