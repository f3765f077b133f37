"""sqlglot expression classes for ADQL's own functions and qcat's extensions.

Standard SQL functions keep sqlglot's classes (``exp.Abs``, ``exp.Count``...,
see :mod:`qcat.czar.adql.functions`); the classes here cover what sqlglot
has no class for. Every argument is named. The geometry constructors are
normalised so later stages see one shape whatever form the user wrote:

- ``POINT([cs,] c1, c2)``            -> ``AdqlPoint(coord_sys?, coord1, coord2)``
- ``CIRCLE([cs,] c1, c2, r)`` and ``CIRCLE([cs,] point, r)``
                                       -> ``AdqlCircle(coord_sys?, center, radius)``
- ``BOX([cs,] c1, c2, w, h)`` and ``BOX([cs,] point, w, h)``
                                       -> ``AdqlBox(coord_sys?, center, width, height)``
- ``POLYGON([cs,] c1, c2, c1, c2, c1, c2, ...)`` and ``POLYGON([cs,] p1, p2, p3, ...)``
                                       -> ``AdqlPolygon(coord_sys?, expressions=[vertex, ...])``
- ``DISTANCE(p1, p2)`` and ``DISTANCE(c1, c2, c1, c2)``
                                       -> ``AdqlDistance(this=p1, expression=p2)``

where a centre, vertex or point given as two coordinates becomes an
``AdqlPoint`` without ``coord_sys``. ``coord_sys`` (the deprecated leading
string of the constructors, such as ``'ICRS'``) is an ``exp.Literal`` string
when written, else absent.
"""

from __future__ import annotations

from typing import ClassVar

from sqlglot import exp


class AdqlFunc(exp.Expression, exp.Func):
    """Base class of the functions defined here."""


class AdqlPoint(AdqlFunc):
    """``POINT([coord_sys,] coord1, coord2)``: a position on the sky, in degrees."""

    arg_types: ClassVar[dict[str, bool]] = {"coord_sys": False, "coord1": True, "coord2": True}
    _sql_names: ClassVar[list[str]] = ["POINT"]


class AdqlCircle(AdqlFunc):
    """``CIRCLE``: ``center`` (a POINT-valued expression) and ``radius`` in degrees."""

    arg_types: ClassVar[dict[str, bool]] = {"coord_sys": False, "center": True, "radius": True}
    _sql_names: ClassVar[list[str]] = ["CIRCLE"]


class AdqlBox(AdqlFunc):
    """``BOX`` (deprecated in ADQL 2.1): ``center``, ``width`` and ``height`` in degrees."""

    arg_types: ClassVar[dict[str, bool]] = {
        "coord_sys": False,
        "center": True,
        "width": True,
        "height": True,
    }
    _sql_names: ClassVar[list[str]] = ["BOX"]


class AdqlPolygon(AdqlFunc):
    """``POLYGON``: ``expressions`` holds the vertices (3 or more POINT-valued expressions)."""

    arg_types: ClassVar[dict[str, bool]] = {"coord_sys": False, "expressions": True}
    _sql_names: ClassVar[list[str]] = ["POLYGON"]


class AdqlContains(AdqlFunc):
    """``CONTAINS(this, expression)``: 1 if ``this`` lies within ``expression``, else 0."""

    arg_types: ClassVar[dict[str, bool]] = {"this": True, "expression": True}
    _sql_names: ClassVar[list[str]] = ["CONTAINS"]


class AdqlIntersects(AdqlFunc):
    """``INTERSECTS(this, expression)``: 1 if the two geometries overlap, else 0."""

    arg_types: ClassVar[dict[str, bool]] = {"this": True, "expression": True}
    _sql_names: ClassVar[list[str]] = ["INTERSECTS"]


class AdqlDistance(AdqlFunc):
    """``DISTANCE``: great-circle distance in degrees between two POINT-valued expressions."""

    arg_types: ClassVar[dict[str, bool]] = {"this": True, "expression": True}
    _sql_names: ClassVar[list[str]] = ["DISTANCE"]


class AdqlArea(AdqlFunc):
    """``AREA(geometry)`` in square degrees."""

    _sql_names: ClassVar[list[str]] = ["AREA"]


class AdqlCentroid(AdqlFunc):
    """``CENTROID(geometry)``: a POINT."""

    _sql_names: ClassVar[list[str]] = ["CENTROID"]


class AdqlCoord1(AdqlFunc):
    """``COORD1(point)``: its first coordinate (right ascension), degrees."""

    _sql_names: ClassVar[list[str]] = ["COORD1"]


class AdqlCoord2(AdqlFunc):
    """``COORD2(point)``: its second coordinate (declination), degrees."""

    _sql_names: ClassVar[list[str]] = ["COORD2"]


class AdqlCoordSys(AdqlFunc):
    """``COORDSYS(geometry)`` (deprecated in ADQL 2.1): the coordinate system name."""

    _sql_names: ClassVar[list[str]] = ["COORDSYS"]


class AdqlInUnit(AdqlFunc):
    """``IN_UNIT(this, unit)``: ``this`` converted to ``unit`` (a VOUnit string literal)."""

    arg_types: ClassVar[dict[str, bool]] = {"this": True, "unit": True}
    _sql_names: ClassVar[list[str]] = ["IN_UNIT"]


# --- qcat extensions (not ADQL 2.1; declared as user-defined functions) -----


class QcatAngDist(AdqlFunc):
    """``ANGDIST(ra1, dec1, ra2, dec2)``: angular separation in degrees (qcat extension)."""

    arg_types: ClassVar[dict[str, bool]] = {"ra1": True, "dec1": True, "ra2": True, "dec2": True}
    _sql_names: ClassVar[list[str]] = ["ANGDIST"]


class QcatFluxToAbmag(AdqlFunc):
    """``FLUX_TO_ABMAG(flux)``: AB magnitude of a flux in nJy (qcat extension)."""

    _sql_names: ClassVar[list[str]] = ["FLUX_TO_ABMAG"]


class QcatAbmagToFlux(AdqlFunc):
    """``ABMAG_TO_FLUX(mag)``: flux in nJy of an AB magnitude (qcat extension)."""

    _sql_names: ClassVar[list[str]] = ["ABMAG_TO_FLUX"]


class IvoHealpixIndex(AdqlFunc):
    """``IVO_HEALPIX_INDEX(order, ra, dec)``: NESTED HEALPix index (IVOA UDF catalogue)."""

    arg_types: ClassVar[dict[str, bool]] = {"order": True, "ra": True, "dec": True}
    _sql_names: ClassVar[list[str]] = ["IVO_HEALPIX_INDEX"]


#: Constructors of geometry values.
GEOMETRY_CONSTRUCTORS: tuple[type[exp.Expression], ...] = (
    AdqlPoint,
    AdqlCircle,
    AdqlBox,
    AdqlPolygon,
)

#: Functions whose value is a geometry.
GEOMETRY_VALUED: tuple[type[exp.Expression], ...] = (*GEOMETRY_CONSTRUCTORS, AdqlCentroid)

#: The geometry predicates, which return 0 or 1 and must be compared with 0 or 1.
GEOMETRY_PREDICATES: tuple[type[exp.Expression], ...] = (AdqlContains, AdqlIntersects)

#: Every class defined here.
ALL_CLASSES: tuple[type[exp.Expression], ...] = (
    AdqlPoint,
    AdqlCircle,
    AdqlBox,
    AdqlPolygon,
    AdqlContains,
    AdqlIntersects,
    AdqlDistance,
    AdqlArea,
    AdqlCentroid,
    AdqlCoord1,
    AdqlCoord2,
    AdqlCoordSys,
    AdqlInUnit,
    QcatAngDist,
    QcatFluxToAbmag,
    QcatAbmagToFlux,
    IvoHealpixIndex,
)
