"""Constant values read off a query tree: numbers, positions and regions.

Translation (exact SQL for constant regions, constant folding of AREA,
CENTROID...) and planning (which chunks a region touches) read the same
constants; both use these functions so they agree on what is constant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlglot import exp

from qcat.czar.adql.expressions import AdqlBox, AdqlCircle, AdqlPoint, AdqlPolygon
from qcat.czar.errors import QueryError
from qcat.geometry import Box, Circle, GeometryError, Point, Polygon

Region = Circle | Polygon | Box
T = TypeVar("T")


def constant_number(node: exp.Expression) -> float | None:
    """The value of a numeric constant, else None.

    Literals with signs and parentheses, and the arithmetic of constants:
    radii are often written ``5./3600.`` or ``1/60.`` (TOPCAT writes its match
    radius so), and a region with such a radius must prune chunks like one
    written ``0.0013889``. Division is exact, as the query runs it (``7 / 2``
    is 3.5, see docs/adql.md); a division by zero is left to the query.
    """
    if isinstance(node, exp.Literal) and not node.is_string:
        return float(node.this)
    if isinstance(node, exp.Neg):
        inner = constant_number(node.this)
        return None if inner is None else -inner
    if isinstance(node, exp.Paren):
        return constant_number(node.this)
    operation = _ARITHMETIC.get(type(node))
    if operation is not None:
        left, right = constant_number(node.this), constant_number(node.expression)
        if left is None or right is None or (isinstance(node, exp.Div) and right == 0.0):
            return None
        return operation(left, right)
    return None


_ARITHMETIC: dict[type[exp.Expression], Callable[[float, float], float]] = {
    exp.Add: lambda a, b: a + b,
    exp.Sub: lambda a, b: a - b,
    exp.Mul: lambda a, b: a * b,
    exp.Div: lambda a, b: a / b,
}


def geometry(kind: Callable[..., T], *args: object) -> T:
    """``kind(*args)`` for a geometry class; an invalid geometry is the user's error."""
    try:
        return kind(*args)
    except GeometryError as e:
        raise QueryError(str(e)) from None


def constant_point(node: exp.Expression) -> Point | None:
    """A POINT of two constants (RA taken modulo 360), else None."""
    if not isinstance(node, AdqlPoint):
        return None
    ra, dec = constant_number(node.args["coord1"]), constant_number(node.args["coord2"])
    if ra is None or dec is None:
        return None
    return geometry(Point, ra % 360.0, dec)


def constant_region(node: exp.Expression) -> Region | None:
    """A CIRCLE, BOX or POLYGON of constants, else None."""
    if isinstance(node, AdqlCircle):
        centre = constant_point(node.args["center"])
        radius = constant_number(node.args["radius"])
        if centre is None or radius is None:
            return None
        return geometry(Circle, centre.ra, centre.dec, radius)
    if isinstance(node, AdqlBox):
        centre = constant_point(node.args["center"])
        w, h = constant_number(node.args["width"]), constant_number(node.args["height"])
        if centre is None or w is None or h is None:
            return None
        return geometry(Box, centre.ra, centre.dec, w, h)
    if isinstance(node, AdqlPolygon):
        vertices = [constant_point(v) for v in node.expressions]
        if any(v is None for v in vertices):
            return None
        return geometry(Polygon, tuple((v.ra, v.dec) for v in vertices if v is not None))
    return None
