"""Translate ADQL's own functions into DuckDB expressions.

Standard SQL functions already print as DuckDB SQL through sqlglot; this
stage replaces what only ADQL has: geometry predicates become exact
spherical tests (:mod:`qcat.geometry.sql`), geometry values become DALI
arrays (``[ra, dec]``, ``[ra, dec, radius]``, ``[ra1, dec1, ...]``),
``IN_UNIT`` becomes a conversion factor computed with astropy, and qcat's
extension functions become arithmetic. CONTAINS and INTERSECTS used as values
(not compared with 0 or 1) become the integers 0 and 1, and CAST follows SQL
where DuckDB does not: ``CHAR(n)`` and ``VARCHAR(n)`` keep at most ``n``
characters (``CHAR`` alone is ``CHAR(1)``), and a geometry CAST to its own
kind is the geometry. Nothing else is introduced, so the result still
contains only allow-listed constructs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
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
from qcat.czar.constraints import double_literal
from qcat.czar.errors import QueryError, UnsupportedQuery
from qcat.czar.resolve import UNIT
from qcat.geometry import (
    Box,
    Circle,
    Point,
    Polygon,
    area_sq_deg,
    centroid,
    circle_contains_sql,
    contains_point,
    contains_sql,
    distance_sql,
    regions_intersect,
)
from qcat.geometry.regions import SQ_DEG_PER_SR, as_shape, circle_test
from qcat.geometry.sql import haversine_at_least_sql, haversine_at_most_sql, literal

#: AB magnitude zero point for fluxes in nJy: m = -2.5 log10(f / nJy) + 31.4.
AB_ZERO_POINT_NJY = 31.4

UnitOf = Callable[[exp.Expression], str | None]


def to_duckdb(tree: exp.Expression, unit_of: UnitOf, *, copy: bool = True) -> exp.Expression:
    """``tree`` with every ADQL-only construct replaced by DuckDB SQL: a copy, or with
    ``copy=False`` ``tree`` itself changed (for callers that own it: no copy of a
    large select list).

    ``unit_of`` gives the unit of a (qualified) column expression, for ``IN_UNIT``.
    """
    _check_coordinate_systems(tree)
    return _translated(tree, unit_of, copy=copy)


def _translated(tree: exp.Expression, unit_of: UnitOf, *, copy: bool = True) -> exp.Expression:
    source = tree.copy() if copy else tree
    return source.transform(lambda node: _translate(node, unit_of), copy=False)


def _check_coordinate_systems(tree: exp.Expression) -> None:
    """Refuse geometries in another frame than ICRS, the frame of every qcat position.

    The coordinate system argument is deprecated in ADQL 2.1; ignoring, say,
    ``'GALACTIC'`` would answer another question than the one asked.
    """
    for node in tree.find_all(AdqlPoint, AdqlCircle, AdqlBox, AdqlPolygon):
        coord_sys = node.args.get("coord_sys")
        if coord_sys is None:
            continue
        words = str(coord_sys.this).split()
        if words and words[0].upper() != "ICRS":
            raise UnsupportedQuery(
                f"coordinate system {coord_sys.this!r} is not supported: positions in qcat are "
                "ICRS; write 'ICRS' or leave the coordinate system out"
            )


def _no_unit(node: exp.Expression) -> str | None:
    return None


def _sub(node: exp.Expression) -> exp.Expression:
    """A sub-expression translated on its own (a replaced node's children are not revisited;
    the whole tree's coordinate systems were checked already)."""
    return _translated(node, _no_unit)


def _sql(node: exp.Expression) -> str:
    return _sub(node).sql("duckdb")


def _parse(sql: str) -> exp.Expression:
    return exp.Paren(this=sqlglot.parse_one(sql, read="duckdb"))


#: Name of the placeholder column standing for argument ``i`` in a :func:`_written` template.
_HOLE = "qcat_arg_{}"


def _written(write: Callable[..., str], *args: exp.Expression) -> exp.Expression:
    """``write(*args)`` (a SQL writer over argument SQL) as a tree, without parsing per query.

    The writer's SQL is parsed once, over placeholder columns, and each
    placeholder is replaced by its (translated) argument tree: the same SQL
    as writing the arguments' text into it and parsing that, without
    printing and re-parsing the arguments each time.
    """
    tree = _template(write, len(args)).copy()
    used: set[int] = set()
    for column in list(tree.find_all(exp.Column)):
        index = _hole_index(column)
        if index is not None:
            arg = args[index]
            column.replace(arg.copy() if index in used else arg)
            used.add(index)
    return tree


@functools.lru_cache(maxsize=64)
def _template(write: Callable[..., str], count: int) -> exp.Expression:
    return _parse(write(*(_HOLE.format(i) for i in range(count))))


def _hole_index(column: exp.Column) -> int | None:
    prefix = _HOLE.format("")
    if column.table or not column.name.startswith(prefix):
        return None
    return int(column.name[len(prefix) :])


def _circles_meet_sql(ra1: str, dec1: str, ra2: str, dec2: str, r1: str, r2: str) -> str:
    return f"{distance_sql(ra1, dec1, ra2, dec2)} <= ({r1}) + ({r2})"


def _circle_within_sql(ra1: str, dec1: str, ra2: str, dec2: str, r1: str, r2: str) -> str:
    return f"{distance_sql(ra1, dec1, ra2, dec2)} + ({r1}) <= ({r2})"


def _translate(node: exp.Expression, unit_of: UnitOf) -> exp.Expression:
    if isinstance(node, (exp.EQ, exp.NEQ)):
        predicate, value = _predicate_comparison(node)
        if predicate is not None:
            test = _predicate(predicate)
            keep = (value == 1) == isinstance(node, exp.EQ)
            return test if keep else exp.Not(this=test)
    if isinstance(node, (AdqlContains, AdqlIntersects)):
        # A value (select list, arithmetic): ADQL's predicates are the numbers 1 and 0.
        return exp.Cast(this=_predicate(node), to=exp.DataType.build("INT"))
    if isinstance(node, exp.Cast):
        return _cast(node)
    if isinstance(node, exp.Rand) and node.this is not None:
        return exp.Rand()  # DuckDB has no per-call seed (see docs/adql.md)
    if isinstance(node, AdqlDistance):
        return _written(distance_sql, *_point_trees(node.this), *_point_trees(node.expression))
    if isinstance(node, QcatAngDist):
        return _written(distance_sql, *(_sub(node.args[k]) for k in ("ra1", "dec1", "ra2", "dec2")))
    if isinstance(node, QcatFluxToAbmag):
        # NULL for fluxes <= 0, as the catalog's own magnitude columns are.
        flux = _sql(node.this)
        return _parse(f"CASE WHEN ({flux}) > 0 THEN -2.5 * log10({flux}) + {AB_ZERO_POINT_NJY} END")
    if isinstance(node, QcatAbmagToFlux):
        return _parse(f"pow(10.0, ({AB_ZERO_POINT_NJY} - ({_sql(node.this)})) / 2.5)")
    if isinstance(node, AdqlCoord1):
        return _sub(_coordinate(node.this, 0))
    if isinstance(node, AdqlCoord2):
        return _sub(_coordinate(node.this, 1))
    if isinstance(node, AdqlCoordSys):
        return exp.Literal.string("ICRS")
    if isinstance(node, AdqlArea):
        return _area(node.this)
    if isinstance(node, AdqlCentroid):
        ra, dec = _point_sql(node)
        return _array([_parse(ra), _parse(dec)])
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


def _point_trees(node: exp.Expression) -> tuple[exp.Expression, exp.Expression]:
    """The translated ra and dec of a POINT (or a constant centroid) as trees."""
    if isinstance(node, exp.Cast) and _cast_kind(node) == "POINT":
        return _point_trees(node.this)
    if isinstance(node, AdqlPoint):
        return _sub(node.args["coord1"]), _sub(node.args["coord2"])
    ra, dec = _point_sql(node)
    return _parse(ra), _parse(dec)


def _point_sql(node: exp.Expression) -> tuple[str, str]:
    if isinstance(node, exp.Cast) and _cast_kind(node) == "POINT":
        return _point_sql(node.this)
    if isinstance(node, AdqlPoint):
        return _sql(node.args["coord1"]), _sql(node.args["coord2"])
    if isinstance(node, AdqlCentroid):
        if isinstance(node.this, AdqlCircle) and constant_region(node.this) is None:
            return _point_sql(node.this.args["center"])  # a circle's centroid is its centre
        c = centroid(_required_region(node.this, "CENTROID"))
        return literal(c.ra), literal(c.dec)
    raise UnsupportedQuery(f"expected a POINT here, found {node.sql('adql')}")


def _area(node: exp.Expression) -> exp.Expression:
    """AREA: a constant for constant regions; for any circle, from its radius."""
    if isinstance(node, AdqlCircle) and constant_region(node) is None:
        radius = _sql(node.args["radius"])
        # 2 pi (1 - cos r) steradians, written with sin^2 as area_sq_deg does.
        return _parse(f"4 * pi() * pow(sin(radians({radius}) / 2), 2) * {literal(SQ_DEG_PER_SR)}")
    return exp.Literal.number(literal(area_sq_deg(_required_region(node, "AREA"))))


def _required_region(node: exp.Expression, where: str) -> Region:
    region = constant_region(node)
    if region is None:
        raise UnsupportedQuery(
            f"{where} needs a geometry of constants here, found {node.sql('adql')}"
        )
    return region


def _geometry(node: exp.Expression) -> exp.Expression:
    """A geometry argument without parentheses and CASTs to its own kind around it."""
    while isinstance(node, exp.Paren) or (
        isinstance(node, exp.Cast) and _cast_kind(node) is not None
    ):
        node = _geometry_cast_value(node) if isinstance(node, exp.Cast) else node.this
    return node


def _predicate(node: exp.Expression) -> exp.Expression:
    """CONTAINS(a, b) / INTERSECTS(a, b) as a DuckDB boolean."""
    a, b = _geometry(node.this), _geometry(node.expression)
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
    if isinstance(a, AdqlCircle) and isinstance(b, AdqlCircle):
        centres = [*_point_trees(a.args["center"]), *_point_trees(b.args["center"])]
        radii = [_sub(a.args["radius"]), _sub(b.args["radius"])]
        if isinstance(node, AdqlIntersects):
            return _written(_circles_meet_sql, *centres, *radii)
        return _written(_circle_within_sql, *centres, *radii)  # a lies within b
    if isinstance(node, AdqlIntersects):
        for circle, other in ((a, b), (b, a)):
            polygon = constant_region(other)
            if isinstance(circle, AdqlCircle) and isinstance(polygon, (Polygon, Box)):
                return _circle_meets_polygon(circle, polygon)
    raise UnsupportedQuery(
        f"{_name(node)} of {a.sql('adql')} and {b.sql('adql')} is not supported: one side "
        "must be a POINT, or both circles, or both constant regions"
        + ("" if isinstance(node, AdqlContains) else ", or a circle and a constant BOX or POLYGON")
    )


def _circle_meets_polygon(circle: AdqlCircle, region: Polygon | Box) -> exp.Expression:
    """INTERSECTS of a circle of any centre and radius with a constant polygon or box.

    They meet when the centre is inside the polygon or within the radius of
    its boundary: of a vertex, or of an edge where the foot of the
    perpendicular from the centre falls on the edge. With ``n`` the unit
    normal of the edge ``a -> b``, the foot falls on it when the centre is on
    ``b``'s side of ``a`` (``p . (n x a) >= 0``) and on ``a``'s side of ``b``
    (``p . (b x n) >= 0``), and its distance to the edge's great circle is
    ``asin(|n . p|)``; no edge is farther than 90 degrees from any point.
    """
    polygon = as_shape(region)
    assert isinstance(polygon, Polygon)
    ra, dec = _point_sql(circle.args["center"])
    radius = _sql(circle.args["radius"])
    vertices = polygon.shape.vectors
    normals = polygon.shape.edge_normals
    following = np.roll(vertices, -1, axis=0)
    tests = [contains_sql(ra, dec, polygon)]
    for v_ra, v_dec in polygon.vertices:
        tests.append(circle_contains_sql(literal(v_ra), literal(v_dec), ra, dec, radius))
    reach = f"sin(radians(least({radius}, 90)))"
    for n, a, b in zip(normals, vertices, following, strict=True):
        near = f"abs({_plane_side(ra, dec, n)}) <= {reach}"
        after_a = f"{_plane_side(ra, dec, np.cross(n, a))} >= 0"
        before_b = f"{_plane_side(ra, dec, np.cross(b, n))} >= 0"
        tests.append(f"({near} AND {after_a} AND {before_b})")
    return _parse(" OR ".join(tests))


def _plane_side(ra: str, dec: str, normal: np.ndarray) -> str:
    """SQL for ``normal . p`` at the position (``ra``, ``dec``)."""
    a, alpha, z = _plane_coefficients_of(normal)
    return f"qcat_plane_side({ra}, {dec}, {literal(a)}, {literal(alpha)}, {literal(z)})"


def _plane_coefficients_of(normal: np.ndarray) -> tuple[float, float, float]:
    """``(A, alpha_deg, z)`` with ``normal = (A cos alpha, A sin alpha, z)``."""
    x, y, z = (float(c) for c in normal)
    return math.hypot(x, y), math.degrees(math.atan2(y, x)), z


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
        shape = as_shape(region)
        if isinstance(shape, Circle):  # the common cone: built from a template, not parsed
            c_ra, c_dec, limit, below = circle_test(shape)
            write = haversine_at_most_sql if below else haversine_at_least_sql
            numbers = (double_literal(v) for v in (c_ra, c_dec, limit))
            return _written(write, *_point_trees(point), *numbers)
        return _parse(contains_sql(ra, dec, region))
    if isinstance(region_node, AdqlCircle):
        cra, cdec = _point_sql(region_node.args["center"])
        return _parse(circle_contains_sql(ra, dec, cra, cdec, _sql(region_node.args["radius"])))
    raise UnsupportedQuery(
        f"CONTAINS in {region_node.sql('adql')} is not supported: a BOX or POLYGON must have "
        "constant vertices"
    )


def _coordinate(node: exp.Expression, index: int) -> exp.Expression:
    if isinstance(node, exp.Cast) and _cast_kind(node) == "POINT":
        return _coordinate(node.this, index)
    if isinstance(node, AdqlPoint):
        return node.args["coord1" if index == 0 else "coord2"]
    if isinstance(node, AdqlCentroid):
        return _parse(_point_sql(node)[index])
    raise UnsupportedQuery(f"COORD{index + 1} needs a POINT, found {node.sql('adql')}")


# -- CAST -------------------------------------------------------------------------

#: Geometry kinds of CAST and the constructors whose values are of that kind.
_GEOMETRY_KINDS: dict[str, tuple[type[exp.Expression], ...]] = {
    "POINT": (AdqlPoint, AdqlCentroid),
    "CIRCLE": (AdqlCircle,),
    "POLYGON": (AdqlPolygon, AdqlBox),
}


def _cast_kind(node: exp.Cast) -> str | None:
    """``POINT``, ``CIRCLE`` or ``POLYGON`` for a CAST to a geometry type."""
    to = node.to
    if to.this != exp.DType.USERDEFINED:
        return None
    return str(to.args.get("kind") or "").upper() or None


def _geometry_cast_value(node: exp.Cast) -> exp.Expression:
    """The geometry a CAST to POINT, CIRCLE or POLYGON converts, checked to be of that kind."""
    kind = _cast_kind(node)
    value = node.this
    while isinstance(value, exp.Paren):
        value = value.this
    if kind is None or not isinstance(value, _GEOMETRY_KINDS.get(kind, ())):
        raise UnsupportedQuery(
            f"CAST to {kind} needs a {kind} value here, found {node.this.sql('adql')}"
        )
    return value


def _cast(node: exp.Cast) -> exp.Expression:
    """CAST as SQL-92 means it where DuckDB differs (string lengths, geometry types)."""
    if _cast_kind(node) is not None:
        return _sub(_geometry_cast_value(node))
    to = node.to
    if to.this in (exp.DType.CHAR, exp.DType.VARCHAR):
        params = to.expressions
        if params or to.this == exp.DType.CHAR:  # CHAR alone is CHAR(1) in SQL
            length = int(params[0].this.this) if params else 1
            text = exp.Cast(this=_sub(node.this), to=exp.DataType.build("VARCHAR"))
            return exp.Left(this=text, expression=exp.Literal.number(length))
    return exp.Cast(this=_sub(node.this), to=to.copy())


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
    source = node.this.meta.get(UNIT) or unit_of(node.this)
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
