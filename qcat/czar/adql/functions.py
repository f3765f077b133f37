"""The allow-list: every function name an ADQL query may call.

Anything not listed here is rejected by :mod:`qcat.czar.adql.validate` as
``unknown function X`` — this is what keeps DuckDB-only functions
(``read_csv``, ``getenv``...) from ever reaching a worker. Each entry gives
the function's kind, its arity, the sqlglot class its call becomes, and the
TAPRegExt language feature that declares it (``None`` for the mandatory
core). ``standard`` is ``False`` for qcat's extensions.

Kinds: ``scalar`` (math, trigonometry, strings, conversions), ``aggregate``,
``geometry`` (ADQL's geometry functions) and ``extension`` (qcat's own
scalar functions, declared as user-defined functions). The aggregates
STDDEV, STDDEV_POP, STDDEV_SAMP, VARIANCE, VAR_POP and VAR_SAMP are qcat
extensions too (``standard=False``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from sqlglot import exp

from qcat.czar.adql import expressions as ax

FunctionKind = Literal["scalar", "aggregate", "geometry", "extension"]
Builder = Callable[[Sequence[exp.Expression]], exp.Expression]

GEO = "ivo://ivoa.net/std/tapregext#features-adqlgeo"
STRING = "ivo://ivoa.net/std/tapregext#features-adql-string"
CONDITIONAL = "ivo://ivoa.net/std/tapregext#features-adql-conditional"
UNIT = "ivo://ivoa.net/std/tapregext#features-adql-unit"
UDF = "ivo://ivoa.net/std/tapregext#features-udf"


@dataclass(frozen=True)
class FunctionSpec:
    """One allow-listed function.

    ``max_args`` is ``None`` for any number. ``build`` turns the parsed
    arguments into the expression (geometry functions and aggregates have
    their own parsing and leave it ``None``). ``signature`` is the TAPRegExt
    ``form`` for extensions.
    """

    name: str
    kind: FunctionKind
    min_args: int
    max_args: int | None
    expression: type[exp.Expression]
    summary: str
    feature: str | None = None
    standard: bool = True
    build: Builder | None = None
    signature: str | None = None

    @property
    def is_aggregate(self) -> bool:
        """Whether a call aggregates rows."""
        return self.kind == "aggregate"

    def arity_text(self) -> str:
        """``"1 argument"``, ``"1 or 2 arguments"``, ``"at least 1 argument"``..."""
        lo, hi = self.min_args, self.max_args
        if hi is None:
            return f"at least {lo} argument{'s' if lo != 1 else ''}"
        if lo == hi:
            return f"{lo} argument{'s' if lo != 1 else ''}"
        return f"{lo} or {hi} arguments" if hi == lo + 1 else f"{lo} to {hi} arguments"


def _unary(cls: type[exp.Expression]) -> Builder:
    return lambda a: cls(this=a[0])


def _binary(cls: type[exp.Expression]) -> Builder:
    return lambda a: cls(this=a[0], expression=a[1])


def _with_decimals(cls: type[exp.Expression]) -> Builder:
    return lambda a: cls(this=a[0], decimals=a[1]) if len(a) > 1 else cls(this=a[0])


def _log10(a: Sequence[exp.Expression]) -> exp.Expression:
    # sqlglot's Log keeps the base in ``this`` when two arguments are given.
    return exp.Log(this=exp.Literal.number(10), expression=a[0])


def _coalesce(a: Sequence[exp.Expression]) -> exp.Expression:
    rest = list(a[1:])
    return exp.Coalesce(this=a[0], expressions=rest) if rest else exp.Coalesce(this=a[0])


def _rand(a: Sequence[exp.Expression]) -> exp.Expression:
    return exp.Rand(this=a[0]) if a else exp.Rand()


def _fields(cls: type[exp.Expression], *names: str) -> Builder:
    return lambda a: cls(**dict(zip(names, a, strict=True)))


def _scalar(
    name: str,
    cls: type[exp.Expression],
    arity: tuple[int, int | None],
    build: Builder,
    summary: str,
    feature: str | None = None,
) -> FunctionSpec:
    return FunctionSpec(name, "scalar", *arity, cls, summary, feature, build=build)


def _aggregate(name: str, cls: type[exp.Expression], summary: str, standard: bool) -> FunctionSpec:
    return FunctionSpec(name, "aggregate", 1, 1, cls, summary, standard=standard)


def _geometry(
    name: str, cls: type[exp.Expression], arity: tuple[int, int | None], summary: str
) -> FunctionSpec:
    return FunctionSpec(name, "geometry", *arity, cls, summary, GEO)


def _extension(
    name: str, cls: type[exp.Expression], build: Builder, signature: str, summary: str
) -> FunctionSpec:
    n = len(cls.arg_types)
    return FunctionSpec(
        name, "extension", n, n, cls, summary, UDF, False, build=build, signature=signature
    )


_SPECS: tuple[FunctionSpec, ...] = (
    # Mathematical functions (ADQL 2.1 table 1).
    _scalar("ABS", exp.Abs, (1, 1), _unary(exp.Abs), "absolute value"),
    _scalar("CEILING", exp.Ceil, (1, 1), _unary(exp.Ceil), "smallest integer not below x"),
    _scalar("DEGREES", exp.Degrees, (1, 1), _unary(exp.Degrees), "radians to degrees"),
    _scalar("EXP", exp.Exp, (1, 1), _unary(exp.Exp), "e raised to x"),
    _scalar("FLOOR", exp.Floor, (1, 1), _unary(exp.Floor), "largest integer not above x"),
    _scalar("LOG", exp.Ln, (1, 1), _unary(exp.Ln), "natural logarithm"),
    _scalar("LOG10", exp.Log, (1, 1), _log10, "base 10 logarithm (exp.Log with base 10)"),
    _scalar("MOD", exp.Mod, (2, 2), _binary(exp.Mod), "remainder of x / y"),
    _scalar("PI", exp.Pi, (0, 0), lambda a: exp.Pi(), "the constant pi"),
    _scalar("POWER", exp.Pow, (2, 2), _binary(exp.Pow), "x raised to y"),
    _scalar("RADIANS", exp.Radians, (1, 1), _unary(exp.Radians), "degrees to radians"),
    _scalar("RAND", exp.Rand, (0, 1), _rand, "random number in [0, 1)"),
    _scalar("ROUND", exp.Round, (1, 2), _with_decimals(exp.Round), "round to n decimals"),
    _scalar("SQRT", exp.Sqrt, (1, 1), _unary(exp.Sqrt), "square root"),
    _scalar("TRUNCATE", exp.Trunc, (1, 2), _with_decimals(exp.Trunc), "truncate to n decimals"),
    # Trigonometric functions (ADQL 2.1 table 2), angles in radians.
    _scalar("ACOS", exp.Acos, (1, 1), _unary(exp.Acos), "arc cosine"),
    _scalar("ASIN", exp.Asin, (1, 1), _unary(exp.Asin), "arc sine"),
    _scalar("ATAN", exp.Atan, (1, 1), _unary(exp.Atan), "arc tangent"),
    _scalar("ATAN2", exp.Atan2, (2, 2), _binary(exp.Atan2), "arc tangent of y/x"),
    _scalar("COS", exp.Cos, (1, 1), _unary(exp.Cos), "cosine"),
    _scalar("COT", exp.Cot, (1, 1), _unary(exp.Cot), "cotangent"),
    _scalar("SIN", exp.Sin, (1, 1), _unary(exp.Sin), "sine"),
    _scalar("TAN", exp.Tan, (1, 1), _unary(exp.Tan), "tangent"),
    # Optional ADQL 2.1 features.
    _scalar("LOWER", exp.Lower, (1, 1), _unary(exp.Lower), "lower case", STRING),
    _scalar("UPPER", exp.Upper, (1, 1), _unary(exp.Upper), "upper case", STRING),
    _scalar("COALESCE", exp.Coalesce, (1, None), _coalesce, "first non-NULL", CONDITIONAL),
    FunctionSpec("IN_UNIT", "scalar", 2, 2, ax.AdqlInUnit, "convert to a VOUnit", UNIT, build=None),
    # Aggregates: the ADQL set functions, then qcat's extensions.
    _aggregate("COUNT", exp.Count, "number of rows or of non-NULL values", True),
    _aggregate("SUM", exp.Sum, "sum", True),
    _aggregate("AVG", exp.Avg, "mean", True),
    _aggregate("MIN", exp.Min, "minimum", True),
    _aggregate("MAX", exp.Max, "maximum", True),
    _aggregate("STDDEV", exp.Stddev, "sample standard deviation", False),
    _aggregate("STDDEV_SAMP", exp.StddevSamp, "sample standard deviation", False),
    _aggregate("STDDEV_POP", exp.StddevPop, "population standard deviation", False),
    _aggregate("VARIANCE", exp.Variance, "sample variance", False),
    _aggregate("VAR_SAMP", exp.Variance, "sample variance (same as VARIANCE)", False),
    _aggregate("VAR_POP", exp.VariancePop, "population variance", False),
    # Geometry (ADQL 2.1 section 4.2); arities count the optional coordinate system.
    _geometry("POINT", ax.AdqlPoint, (2, 3), "a position"),
    _geometry("CIRCLE", ax.AdqlCircle, (2, 4), "a circle (cone)"),
    _geometry("BOX", ax.AdqlBox, (3, 5), "a box (deprecated in ADQL 2.1)"),
    _geometry("POLYGON", ax.AdqlPolygon, (3, None), "a polygon with great-circle edges"),
    _geometry("CONTAINS", ax.AdqlContains, (2, 2), "1 if the first is inside the second"),
    _geometry("INTERSECTS", ax.AdqlIntersects, (2, 2), "1 if the geometries overlap"),
    _geometry("DISTANCE", ax.AdqlDistance, (2, 4), "great-circle distance in degrees"),
    _geometry("AREA", ax.AdqlArea, (1, 1), "area in square degrees"),
    _geometry("CENTROID", ax.AdqlCentroid, (1, 1), "centroid, a POINT"),
    _geometry("COORD1", ax.AdqlCoord1, (1, 1), "first coordinate of a POINT"),
    _geometry("COORD2", ax.AdqlCoord2, (1, 1), "second coordinate of a POINT"),
    _geometry("COORDSYS", ax.AdqlCoordSys, (1, 1), "coordinate system (deprecated)"),
    # qcat extensions.
    _extension(
        "ANGDIST",
        ax.QcatAngDist,
        _fields(ax.QcatAngDist, "ra1", "dec1", "ra2", "dec2"),
        "ANGDIST(ra1 DOUBLE, dec1 DOUBLE, ra2 DOUBLE, dec2 DOUBLE) -> DOUBLE",
        "angular separation in degrees of two positions given in degrees",
    ),
    _extension(
        "FLUX_TO_ABMAG",
        ax.QcatFluxToAbmag,
        _unary(ax.QcatFluxToAbmag),
        "FLUX_TO_ABMAG(flux DOUBLE) -> DOUBLE",
        "AB magnitude of a flux in nJy: -2.5 log10(flux) + 31.4",
    ),
    _extension(
        "ABMAG_TO_FLUX",
        ax.QcatAbmagToFlux,
        _unary(ax.QcatAbmagToFlux),
        "ABMAG_TO_FLUX(mag DOUBLE) -> DOUBLE",
        "flux in nJy of an AB magnitude: 10^((31.4 - mag) / 2.5)",
    ),
    _extension(
        "IVO_HEALPIX_INDEX",
        ax.IvoHealpixIndex,
        _fields(ax.IvoHealpixIndex, "order", "ra", "dec"),
        "ivo_healpix_index(hpxOrder INTEGER, ra DOUBLE, dec DOUBLE) -> BIGINT",
        "NESTED HEALPix index of a position at an order (IVOA UDF catalogue)",
    ),
)

#: Every allow-listed function by upper-case name.
FUNCTIONS: dict[str, FunctionSpec] = {spec.name: spec for spec in _SPECS}

#: Names whose calls aggregate rows.
AGGREGATES: frozenset[str] = frozenset(s.name for s in _SPECS if s.kind == "aggregate")

#: The ADQL set functions, the only aggregates that accept DISTINCT.
SET_FUNCTIONS: frozenset[str] = frozenset({"COUNT", "SUM", "AVG", "MIN", "MAX"})

#: Functions qcat parses but refuses, with the reason.
UNSUPPORTED: dict[str, str] = {
    "REGION": "REGION (STC-S regions) is not supported by qcat; use POINT, CIRCLE, BOX or POLYGON",
}

#: Expression classes of allow-listed calls (for checks on finished trees).
ALLOWED_CLASSES: frozenset[type[exp.Expression]] = frozenset(s.expression for s in _SPECS)


def lookup(name: str) -> FunctionSpec | None:
    """The allow-list entry for ``name`` (any case), or ``None``."""
    return FUNCTIONS.get(name.upper())


def language_features() -> dict[str, list[str]]:
    """TAPRegExt language features the parser accepts: feature type -> forms.

    The TAP ``/capabilities`` document declares these (the set operators,
    WITH, CAST, OFFSET and ILIKE are syntax, not functions, so they are
    listed here too).
    """
    base = "ivo://ivoa.net/std/tapregext#features-adql-"
    features: dict[str, list[str]] = {
        GEO: [s.name for s in _SPECS if s.kind == "geometry"],
        STRING: ["LOWER", "UPPER", "ILIKE"],
        base + "sets": ["UNION", "EXCEPT", "INTERSECT"],
        base + "common-table": ["WITH"],
        base + "type": ["CAST"],
        CONDITIONAL: ["COALESCE"],
        UNIT: ["IN_UNIT"],
        base + "offset": ["OFFSET"],
        UDF: [s.signature for s in _SPECS if s.signature],
    }
    return features
