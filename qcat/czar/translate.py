"""Translate ADQL's own functions into DuckDB expressions.

Standard SQL functions already print as DuckDB SQL through sqlglot; this
stage replaces what only ADQL has: geometry predicates become exact
spherical tests (:mod:`qcat.geometry.sql`), geometry values become DALI
arrays (``[ra, dec]``, ``[ra, dec, radius]``, ``[ra1, dec1, ...]``),
``IN_UNIT`` becomes a conversion factor computed with astropy, and qcat's
extension functions become arithmetic. Nothing else is introduced, so the
result still contains only allow-listed constructs.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlglot
from sqlglot import exp

from qcat.czar.adql.expressions import (
    AdqlArea,
    AdqlBox,
    AdqlCentroid,
    AdqlCircle,
    AdqlContains,
    AdqlCoord1,
    AdqlCoord2,
    AdqlCoordSys,
    AdqlDistance,
    AdqlIntersects,
    AdqlInUnit,
    AdqlPoint,
    AdqlPolygon,
    IvoHealpixIndex,
    QcatAbmagToFlux,
    QcatAngDist,
    QcatFluxToAbmag,
)
from qcat.czar.constants import Region, constant_point, constant_region
from qcat.czar.errors import QueryError, UnsupportedQuery
from qcat.geometry import (
    Box,
    Circle,
    Point,
    area_sq_deg,
    centroid,
    circle_contains_sql,
    contains_point,
    contains_sql,
    distance_sql,
    regions_intersect,
)
from qcat.geometry.sql import literal

#: AB magnitude zero point for fluxes in nJy: m = -2.5 log10(f / nJy) + 31.4.
AB_ZERO_POINT_NJY = 31.4

UnitOf = Callable[[exp.Expression], str | None]


def to_duckdb(tree: exp.Expression, unit_of: UnitOf) -> exp.Expression:
    """A copy of ``tree`` with every ADQL-only construct replaced by DuckDB SQL.

    ``unit_of`` gives the unit of a (qualified) column expression, for ``IN_UNIT``.
    """
    return tree.copy().transform(lambda node: _translate(node, unit_of), copy=False)


def _no_unit(node: exp.Expression) -> str | None:
    return None


def _sub(node: exp.Expression) -> exp.Expression:
    """A sub-expression translated on its own (a replaced node's children are not revisited)."""
    return to_duckdb(node, _no_unit)


def _sql(node: exp.Expression) -> str:
    return _sub(node).sql("duckdb")


def _parse(sql: str) -> exp.Expression:
    return exp.Paren(this=sqlglot.parse_one(sql, read="duckdb"))


def _translate(node: exp.Expression, unit_of: UnitOf) -> exp.Expression:
    if isinstance(node, (exp.EQ, exp.NEQ)):
        predicate, value = _predicate_comparison(node)
        if predicate is not None:
            test = _predicate(predicate)
            keep = (value == 1) == isinstance(node, exp.EQ)
            return test if keep else exp.Not(this=test)
    if isinstance(node, (AdqlContains, AdqlIntersects)):
        raise QueryError(f"{_name(node)} must be compared with 0 or 1")
    if isinstance(node, AdqlDistance):
        return _parse(distance_sql(*_point_sql(node.this), *_point_sql(node.expression)))
    if isinstance(node, QcatAngDist):
        args = [_sql(node.args[k]) for k in ("ra1", "dec1", "ra2", "dec2")]
        return _parse(distance_sql(*args))
    if isinstance(node, QcatFluxToAbmag):
        return _parse(f"(-2.5 * log10({_sql(node.this)}) + {AB_ZERO_POINT_NJY})")
    if isinstance(node, QcatAbmagToFlux):
        return _parse(f"pow(10.0, ({AB_ZERO_POINT_NJY} - ({_sql(node.this)})) / 2.5)")
    if isinstance(node, AdqlCoord1):
        return _sub(_coordinate(node.this, 0))
    if isinstance(node, AdqlCoord2):
        return _sub(_coordinate(node.this, 1))
    if isinstance(node, AdqlCoordSys):
        return exp.Literal.string("ICRS")
    if isinstance(node, AdqlArea):
        return exp.Literal.number(literal(area_sq_deg(_required_region(node.this, "AREA"))))
    if isinstance(node, AdqlCentroid):
        c = centroid(_required_region(node.this, "CENTROID"))
        return _array([exp.Literal.number(literal(c.ra)), exp.Literal.number(literal(c.dec))])
    if isinstance(node, AdqlInUnit):
        return _in_unit(node, unit_of)
    if isinstance(node, IvoHealpixIndex):
        raise UnsupportedQuery("IVO_HEALPIX_INDEX is not available in this service")
    if isinstance(node, (AdqlPoint, AdqlCircle, AdqlBox, AdqlPolygon)):
        return _geometry_value(node)
    return node


def _name(node: exp.Expression) -> str:
    return "CONTAINS" if isinstance(node, AdqlContains) else "INTERSECTS"


def _predicate_comparison(node: exp.Expression) -> tuple[exp.Expression | None, int]:
    left, right = node.this, node.expression
    for a, b in ((left, right), (right, left)):
        if isinstance(a, (AdqlContains, AdqlIntersects)) and isinstance(b, exp.Literal):
            value = float(b.this)
            if value not in (0.0, 1.0):
                raise QueryError(f"{_name(a)} must be compared with 0 or 1, not {b.this}")
            return a, int(value)
    return None, 0


# -- geometry ------------------------------------------------------------------


def _point_sql(node: exp.Expression) -> tuple[str, str]:
    if isinstance(node, AdqlPoint):
        return _sql(node.args["coord1"]), _sql(node.args["coord2"])
    if isinstance(node, AdqlCentroid):
        c = centroid(_required_region(node.this, "CENTROID"))
        return literal(c.ra), literal(c.dec)
    raise UnsupportedQuery(f"expected a POINT here, found {node.sql('adql')}")


def _required_region(node: exp.Expression, where: str) -> Region:
    region = constant_region(node)
    if region is None:
        raise UnsupportedQuery(
            f"{where} needs a geometry of constants here, found {node.sql('adql')}"
        )
    return region


def _predicate(node: exp.Expression) -> exp.Expression:
    """CONTAINS(a, b) / INTERSECTS(a, b) as a DuckDB boolean."""
    a, b = node.this, node.expression
    if isinstance(node, AdqlIntersects) and isinstance(b, AdqlPoint):
        a, b = b, a  # INTERSECTS is symmetric; a point meets a region when inside it
    if isinstance(a, AdqlPoint):
        return _point_in(a, b)
    left, right = constant_region(a), constant_region(b)
    if left is not None and right is not None:
        value = (
            regions_intersect(left, right)
            if isinstance(node, AdqlIntersects)
            else _region_contains(right, left)
        )
        return exp.Boolean(this=bool(value))
    if isinstance(node, AdqlIntersects) and isinstance(a, AdqlCircle) and isinstance(b, AdqlCircle):
        (ra1, dec1), (ra2, dec2) = _point_sql(a.args["center"]), _point_sql(b.args["center"])
        reach = f"({_sql(a.args['radius'])}) + ({_sql(b.args['radius'])})"
        return _parse(f"{distance_sql(ra1, dec1, ra2, dec2)} <= {reach}")
    raise UnsupportedQuery(
        f"{_name(node)} of {a.sql('adql')} and {b.sql('adql')} is not supported: one side "
        "must be a POINT, or both circles, or both constant regions"
    )


def _region_contains(outer: Region, inner: Region) -> bool:
    if isinstance(inner, Circle) and isinstance(outer, Circle):
        from qcat.geometry import distance_deg

        d = distance_deg(Point(outer.ra, outer.dec), Point(inner.ra, inner.dec))
        return bool(d + inner.radius <= outer.radius)
    raise UnsupportedQuery(
        "CONTAINS of one constant region in another is only supported for circles"
    )


def _point_in(point: AdqlPoint, region_node: exp.Expression) -> exp.Expression:
    ra, dec = _point_sql(point)
    region = constant_region(region_node)
    if region is not None:
        constant = constant_point(point)
        if constant is not None:
            return exp.Boolean(this=bool(contains_point(region, constant.ra, constant.dec)))
        return _parse(contains_sql(ra, dec, region))
    if isinstance(region_node, AdqlCircle):
        cra, cdec = _point_sql(region_node.args["center"])
        return _parse(circle_contains_sql(ra, dec, cra, cdec, _sql(region_node.args["radius"])))
    raise UnsupportedQuery(
        f"CONTAINS in {region_node.sql('adql')} is not supported: a BOX or POLYGON must have "
        "constant vertices"
    )


def _coordinate(node: exp.Expression, index: int) -> exp.Expression:
    if isinstance(node, AdqlPoint):
        return node.args["coord1" if index == 0 else "coord2"]
    if isinstance(node, AdqlCentroid):
        c = centroid(_required_region(node.this, "CENTROID"))
        return exp.Literal.number(literal(c.ra if index == 0 else c.dec))
    raise UnsupportedQuery(f"COORD{index + 1} needs a POINT, found {node.sql('adql')}")


def _array(items: list[exp.Expression]) -> exp.Expression:
    return exp.Array(expressions=[_double(i) for i in items])


def _geometry_value(node: exp.Expression) -> exp.Expression:
    """A geometry in the select list, as its DALI array of doubles."""
    if isinstance(node, AdqlPoint):
        return _array([node.args["coord1"], node.args["coord2"]])
    if isinstance(node, AdqlCircle):
        centre = node.args["center"]
        if not isinstance(centre, AdqlPoint):
            raise UnsupportedQuery(f"cannot evaluate {node.sql('adql')}")
        return _array([centre.args["coord1"], centre.args["coord2"], node.args["radius"]])
    if isinstance(node, AdqlBox):
        region = _required_region(node, "BOX")
        assert isinstance(region, Box)
        vertices = region.to_polygon().vertices
        return _array([exp.Literal.number(literal(x)) for v in vertices for x in v])
    if isinstance(node, AdqlPolygon):
        items: list[exp.Expression] = []
        for v in node.expressions:
            if not isinstance(v, AdqlPoint):
                raise UnsupportedQuery(f"cannot evaluate {node.sql('adql')}")
            items.extend([v.args["coord1"], v.args["coord2"]])
        return _array(items)
    return node


def _double(node: exp.Expression) -> exp.Expression:
    return exp.Cast(this=_sub(node), to=exp.DataType.build("DOUBLE"))


# -- units --------------------------------------------------------------------


def _in_unit(node: AdqlInUnit, unit_of: UnitOf) -> exp.Expression:
    from astropy import units as u

    target = node.args["unit"].this
    source = unit_of(node.this)
    if source is None:
        raise QueryError(
            f"IN_UNIT: the unit of {node.this.sql('adql')} is not known; IN_UNIT needs a "
            "column with a unit"
        )
    try:
        factor = u.Unit(source, format="vounit", parse_strict="raise").to(
            u.Unit(target, format="vounit", parse_strict="raise")
        )
    except ValueError as e:
        raise QueryError(f"IN_UNIT: cannot convert {source!r} to {target!r}: {e}") from None
    except u.UnitConversionError:
        raise QueryError(f"IN_UNIT: {source!r} cannot be converted to {target!r}") from None
    return exp.Paren(
        this=exp.Mul(
            this=exp.Paren(this=_sub(node.this)), expression=_parse(literal(float(factor)))
        )
    )
