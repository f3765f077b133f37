"""Arguments of ADQL's geometry functions -> the regular shapes of expressions.py.

ADQL 2.1 lets a centre, vertex or point be written either as two numeric
coordinates or as one POINT-valued expression, after an optional
coordinate-system string. This module checks the count and the kinds of
the arguments (as far as the text tells, see :mod:`kinds`) and builds one
shape, or raises an error that says what is missing or extra.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlglot import exp

from qcat.czar.adql import expressions as ax
from qcat.czar.adql.errors import AdqlSyntaxError
from qcat.czar.adql.kinds import kind_of, unparen
from qcat.czar.adql.lexer import Token

#: ``fail(message, where, expected)`` makes the error to raise.
Fail = Callable[[str, Token | exp.Expression, str | None], AdqlSyntaxError]

_Builder = Callable[[list[exp.Expression], Token, Fail], exp.Expression]

CONSTRUCTORS = frozenset({"POINT", "CIRCLE", "BOX", "POLYGON"})

#: How many arguments each constructor takes in its coordinates form.
_COORDINATE_FORM_COUNTS = {"POINT": 2, "CIRCLE": 3, "BOX": 4}


def build_geometry(
    name: str, args: Sequence[exp.Expression], close: Token, fail: Fail
) -> exp.Expression:
    """The expression for a call of the geometry function ``name`` (upper case).

    ``close`` is the call's closing parenthesis, where a missing argument
    is reported.
    """
    args = list(args)
    coord_sys: exp.Expression | None = None
    if name in CONSTRUCTORS and args:
        first = unparen(args[0])
        if isinstance(first, exp.Literal) and first.is_string:
            coord_sys = first
            args = args[1:]
        else:
            _reject_double_quoted_coord_sys(name, args, fail)
    builder = _BUILDERS[name]
    node = builder(args, close, fail)
    if coord_sys is not None:
        node.set("coord_sys", coord_sys)
    return node


def _reject_double_quoted_coord_sys(name: str, args: list[exp.Expression], fail: Fail) -> None:
    first = args[0]
    if not (
        isinstance(first, exp.Column)
        and not first.table
        and isinstance(first.this, exp.Identifier)
        and first.this.quoted
    ):
        return
    n = len(args) - 1
    coordinate_form = _COORDINATE_FORM_COUNTS.get(name)
    if n == coordinate_form or (name == "POLYGON" and n >= 6 and n % 2 == 0):
        raise fail(
            f"the coordinate system of {name} is a string: write it in single quotes, "
            f"'{first.name}' (double quotes make a column name)",
            first,
            "a string in single quotes",
        )


def _point(a: exp.Expression, b: exp.Expression) -> ax.AdqlPoint:
    point = ax.AdqlPoint(coord1=a, coord2=b)
    meta_a, meta_b = a.meta, b.meta
    if meta_a:
        point.meta.update(meta_a)
        point.meta["end"] = meta_b.get("end", meta_a.get("end"))
    return point


def _numbers(name: str, args: Sequence[exp.Expression], fail: Fail, what: str) -> None:
    for arg in args:
        kind = kind_of(arg)
        if kind in ("geometry", "string", "condition"):
            raise fail(f"{what} of {name} must be a number, found {_kind_words(kind)}", arg, None)


def _geometries(name: str, args: Sequence[exp.Expression], fail: Fail, what: str) -> None:
    for arg in args:
        kind = kind_of(arg)
        if kind in ("number", "string", "condition"):
            raise fail(f"{what} of {name} must be a geometry, found {_kind_words(kind)}", arg, None)


def _kind_words(kind: str) -> str:
    return {
        "geometry": "a geometry",
        "string": "a string",
        "condition": "a condition",
        "number": "a number",
    }.get(kind, "a value")


def _too_many(name: str, extra: exp.Expression, shape: str, fail: Fail) -> AdqlSyntaxError:
    return fail(f"too many arguments: {name} takes {shape}", extra, "')'")


def _build_point(args: list[exp.Expression], close: Token, fail: Fail) -> exp.Expression:
    shape = "two coordinates (after an optional coordinate system string)"
    if len(args) > 2:
        raise _too_many("POINT", args[2], shape, fail)
    if len(args) < 2:
        what = "the second coordinate" if args else "the two coordinates"
        raise fail(f"expected {what} of POINT", close, what)
    _numbers("POINT", args, fail, "a coordinate")
    return _point(args[0], args[1])


def _build_circle(args: list[exp.Expression], close: Token, fail: Fail) -> exp.Expression:
    shape = "a centre (a POINT or two coordinates) and a radius"
    if len(args) > 3:
        raise _too_many("CIRCLE", args[3], shape, fail)
    if len(args) == 3:
        _numbers("CIRCLE", args, fail, "a coordinate or the radius")
        return ax.AdqlCircle(center=_point(args[0], args[1]), radius=args[2])
    centre_is_coordinate = bool(args) and kind_of(args[0]) == "number"
    if len(args) == 2 and not centre_is_coordinate:
        _geometries("CIRCLE", args[:1], fail, "the centre")
        _numbers("CIRCLE", args[1:], fail, "the radius")
        return ax.AdqlCircle(center=args[0], radius=args[1])
    if len(args) == 1 and centre_is_coordinate:
        raise fail("expected the second coordinate of the centre of CIRCLE", close, "a coordinate")
    if not args:
        raise fail("expected the centre and the radius of CIRCLE", close, "a centre")
    raise fail("expected a radius after the centre of CIRCLE", close, "a radius")


def _build_box(args: list[exp.Expression], close: Token, fail: Fail) -> exp.Expression:
    shape = "a centre (a POINT or two coordinates), a width and a height"
    if len(args) > 4:
        raise _too_many("BOX", args[4], shape, fail)
    if len(args) == 4:
        _numbers("BOX", args, fail, "a coordinate or size")
        return ax.AdqlBox(center=_point(args[0], args[1]), width=args[2], height=args[3])
    centre_is_coordinate = bool(args) and kind_of(args[0]) == "number"
    if len(args) == 3 and not centre_is_coordinate:
        _geometries("BOX", args[:1], fail, "the centre")
        _numbers("BOX", args[1:], fail, "the width and height")
        return ax.AdqlBox(center=args[0], width=args[1], height=args[2])
    if not args:
        raise fail("expected the centre, width and height of BOX", close, "a centre")
    if len(args) == 1 and centre_is_coordinate:
        raise fail("expected the second coordinate of the centre of BOX", close, "a coordinate")
    if len(args) == 3 or (len(args) == 2 and not centre_is_coordinate):
        raise fail("expected the height of BOX after its width", close, "a height")
    raise fail("expected the width and height of BOX after its centre", close, "a width")


def _build_polygon(args: list[exp.Expression], close: Token, fail: Fail) -> exp.Expression:
    kinds = [kind_of(a) for a in args]
    points_form = "geometry" in kinds or (
        "number" not in kinds and len(args) % 2 == 1 and len(args) >= 3
    )
    if points_form:
        for arg, kind in zip(args, kinds, strict=True):
            if kind != "geometry" and kind != "unknown":
                raise fail(
                    "POLYGON vertices must be all POINTs or all coordinates, not a mixture",
                    arg,
                    "a POINT",
                )
        vertices = args
    else:
        _numbers("POLYGON", args, fail, "a coordinate")
        if len(args) % 2 == 1:
            raise fail(
                "POLYGON coordinates come in pairs: the last vertex has no second coordinate",
                close,
                "a coordinate",
            )
        vertices = [_point(args[i], args[i + 1]) for i in range(0, len(args), 2)]
    if len(vertices) < 3:
        found = len(vertices)
        raise fail(
            f"POLYGON needs at least 3 vertices, found {found}",
            close,
            "more vertices",
        )
    return ax.AdqlPolygon(expressions=list(vertices))


def _build_distance(args: list[exp.Expression], close: Token, fail: Fail) -> exp.Expression:
    shape = "two POINTs or four coordinates (ra1, dec1, ra2, dec2)"
    if len(args) > 4:
        raise _too_many("DISTANCE", args[4], shape, fail)
    if len(args) == 4:
        _numbers("DISTANCE", args, fail, "a coordinate")
        return ax.AdqlDistance(this=_point(args[0], args[1]), expression=_point(args[2], args[3]))
    if len(args) == 2:
        _geometries("DISTANCE", args, fail, "a point")
        return ax.AdqlDistance(this=args[0], expression=args[1])
    raise fail(f"DISTANCE takes {shape}, found {len(args)} arguments", close, "')'")


def _binary_predicate(name: str, cls: type[exp.Expression]) -> _Builder:
    def build(args: list[exp.Expression], close: Token, fail: Fail) -> exp.Expression:
        if len(args) > 2:
            raise _too_many(name, args[2], "two geometries", fail)
        if len(args) < 2:
            raise fail(f"{name} takes two geometries, found {len(args)}", close, "a geometry")
        _geometries(name, args, fail, "an argument")
        return cls(this=args[0], expression=args[1])

    return build


def _unary_geometry(name: str, cls: type[exp.Expression], what: str) -> _Builder:
    def build(args: list[exp.Expression], close: Token, fail: Fail) -> exp.Expression:
        if len(args) > 1:
            raise _too_many(name, args[1], f"one {what}", fail)
        if not args:
            raise fail(f"expected a {what} in {name}()", close, f"a {what}")
        _geometries(name, args, fail, "the argument")
        return cls(this=args[0])

    return build


_BUILDERS: dict[str, _Builder] = {
    "POINT": _build_point,
    "CIRCLE": _build_circle,
    "BOX": _build_box,
    "POLYGON": _build_polygon,
    "DISTANCE": _build_distance,
    "CONTAINS": _binary_predicate("CONTAINS", ax.AdqlContains),
    "INTERSECTS": _binary_predicate("INTERSECTS", ax.AdqlIntersects),
    "AREA": _unary_geometry("AREA", ax.AdqlArea, "geometry"),
    "CENTROID": _unary_geometry("CENTROID", ax.AdqlCentroid, "geometry"),
    "COORDSYS": _unary_geometry("COORDSYS", ax.AdqlCoordSys, "geometry"),
    "COORD1": _unary_geometry("COORD1", ax.AdqlCoord1, "point"),
    "COORD2": _unary_geometry("COORD2", ax.AdqlCoord2, "point"),
}
