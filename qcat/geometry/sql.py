"""DuckDB SQL for ADQL geometry: macros and expression builders.

Workers keep rows inside DuckDB and cannot load extensions, so every test is
plain SQL arithmetic. :data:`SETUP_SQL` (the ``CREATE MACRO`` statements of
:data:`MACROS`) runs on every connection of the czar and the workers; the
builders return SQL text that uses those macros. Constants are rendered with
``repr`` plus an exponent (``0.5e0``), which DuckDB reads as an exact DOUBLE
(a plain ``0.5`` would be a DECIMAL).

Boundaries are inclusive, as ADQL's CONTAINS says ("in, or on, the
boundary"); points within about 1e-9 degrees of a boundary may fall either
way through rounding.
"""

from __future__ import annotations

import math

import numpy as np

from qcat.geometry.errors import GeometryError
from qcat.geometry.polygon import EDGE_SLACK
from qcat.geometry.regions import (
    Box,
    Circle,
    Polygon,
    as_shape,
    circle_test,
    plane_coefficients,
)

# sin^2 of half the distance: the haversine, exact for small separations.
_HAV = """
CREATE OR REPLACE MACRO qcat_hav(ra1, dec1, ra2, dec2) AS
    pow(sin(radians(dec2 - dec1) / 2), 2)
    + cos(radians(dec1)) * cos(radians(dec2)) * pow(sin(radians(ra2 - ra1) / 2), 2)
"""

# Vincenty's atan2 form, with the along-track and radial terms rewritten through
# sin^2(d_ra / 2) so that neither cancels for tiny separations; atan2 keeps full
# precision near 0 and near 180 degrees, where acos and asin lose half the digits.
_DISTANCE = """
CREATE OR REPLACE MACRO qcat_distance(ra1, dec1, ra2, dec2) AS
    degrees(atan2(
        sqrt(
            pow(cos(radians(dec2)) * sin(radians(ra2 - ra1)), 2)
            + pow(sin(radians(dec2 - dec1))
                  + 2 * sin(radians(dec1)) * cos(radians(dec2))
                    * pow(sin(radians(ra2 - ra1) / 2), 2), 2)),
        cos(radians(dec2 - dec1))
        - 2 * cos(radians(dec1)) * cos(radians(dec2)) * pow(sin(radians(ra2 - ra1) / 2), 2)))
"""

# Radii up to 90 degrees compare haversines directly; larger circles are the
# complement of a small circle around the antipode, where the haversine stays exact.
_CIRCLE = """
CREATE OR REPLACE MACRO qcat_circle_contains(ra, dec, cra, cdec, radius) AS
    CASE WHEN radius <= 90
        THEN qcat_hav(ra, dec, cra, cdec) <= pow(sin(radians(radius) / 2), 2)
        ELSE qcat_hav(ra, dec, cra + 180, -cdec) >= pow(sin(radians(180 - radius) / 2), 2)
    END
"""

# n . p for a plane normal n = (a cos(alpha), a sin(alpha), z) and the unit vector p of (ra, dec).
_PLANE_SIDE = """
CREATE OR REPLACE MACRO qcat_plane_side(ra, dec, a, alpha, z) AS
    a * cos(radians(dec)) * cos(radians(ra - alpha)) + z * sin(radians(dec))
"""

_UNIT = [
    "CREATE OR REPLACE MACRO qcat_unit_x(ra, dec) AS cos(radians(dec)) * cos(radians(ra))",
    "CREATE OR REPLACE MACRO qcat_unit_y(ra, dec) AS cos(radians(dec)) * sin(radians(ra))",
    "CREATE OR REPLACE MACRO qcat_unit_z(ra, dec) AS sin(radians(dec))",
]

#: ``CREATE MACRO`` statements every DuckDB connection of qcat runs (names start ``qcat_``).
MACROS: list[str] = [
    _HAV.strip(),
    _DISTANCE.strip(),
    _CIRCLE.strip(),
    _PLANE_SIDE.strip(),
    *_UNIT,
]

#: What a worker process runs on each new connection.
SETUP_SQL = MACROS


def literal(value: float) -> str:
    """``value`` as a DuckDB DOUBLE literal that reads back as exactly the same float."""
    x = float(value)
    if not math.isfinite(x):
        raise GeometryError(f"cannot use a non-finite number in SQL: {x!r}")
    text = repr(x)
    # DuckDB reads 1.5 as DECIMAL but 1.5e0 as DOUBLE.
    return text if "e" in text else f"{text}e0"


def distance_sql(ra1: str, dec1: str, ra2: str, dec2: str) -> str:
    """SQL for the great-circle distance in degrees between two positions (SQL expressions)."""
    return f"qcat_distance({ra1}, {dec1}, {ra2}, {dec2})"


def circle_contains_sql(ra: str, dec: str, cra: str, cdec: str, radius: str) -> str:
    """SQL true when (``ra``, ``dec``) is within ``radius`` degrees of (``cra``, ``cdec``).

    All arguments are SQL expressions (columns of two joined tables, say), so
    this serves neighbour joins such as
    ``CONTAINS(POINT(a.ra, a.dec), CIRCLE(b.ra, b.dec, 0.001))``.
    """
    return f"qcat_circle_contains({ra}, {dec}, {cra}, {cdec}, {radius})"


def contains_sql(ra: str, dec: str, region: Circle | Polygon | Box) -> str:
    """SQL true exactly when (``ra``, ``dec``) lies in ``region`` or on its boundary.

    ``ra`` and ``dec`` are SQL expressions in degrees; the region is constant.
    A circle becomes one haversine comparison; a polygon an OR over its
    convex pieces of ANDs of plane sign tests (a shared diagonal uses the same
    expression with ``>=`` on one side and ``<=`` on the other).
    """
    shape = as_shape(region)
    if isinstance(shape, Circle):
        c_ra, c_dec, limit, below = circle_test(shape)
        write = haversine_at_most_sql if below else haversine_at_least_sql
        return write(ra, dec, literal(c_ra), literal(c_dec), literal(limit))
    if not isinstance(shape, Polygon):
        raise GeometryError(f"CONTAINS needs a CIRCLE, BOX or POLYGON, not {type(region).__name__}")
    a, alpha, z = plane_coefficients(shape.shape)
    sides = [
        f"qcat_plane_side({ra}, {dec}, {literal(a[i])}, {literal(alpha[i])}, {literal(z[i])})"
        for i in range(len(a))
    ]
    pieces = []
    for piece in shape.shape.pieces:
        tests = [
            f"{sides[h.plane]} >= {literal(-EDGE_SLACK)}"
            if h.sign > 0
            else f"{sides[h.plane]} <= {literal(EDGE_SLACK)}"
            for h in piece
        ]
        pieces.append("(" + " AND ".join(tests) + ")")
    return "(" + " OR ".join(pieces) + ")"


def haversine_at_most_sql(ra: str, dec: str, c_ra: str, c_dec: str, limit: str) -> str:
    """SQL true when the haversine term of (``ra``, ``dec``) from the centre is at most ``limit``.

    The circle test of :func:`contains_sql` (see :func:`~qcat.geometry.regions.circle_test`).
    """
    return f"(qcat_hav({ra}, {dec}, {c_ra}, {c_dec}) <= {limit})"


def haversine_at_least_sql(ra: str, dec: str, c_ra: str, c_dec: str, limit: str) -> str:
    """Like :func:`haversine_at_most_sql`, with ``>=`` (circles over 90 degrees, antipode form)."""
    return f"(qcat_hav({ra}, {dec}, {c_ra}, {c_dec}) >= {limit})"


def healpix_ranges_sql(column: str, ranges: np.ndarray) -> str:
    """SQL true when ``column`` (an order-29 HEALPix index) lies in one of ``ranges``.

    ``ranges`` are half-open ``[start, stop)`` rows (``region_ranges``);
    each becomes ``column BETWEEN start AND stop - 1`` so DuckDB's Parquet
    min/max statistics can skip row groups. No ranges gives ``FALSE``.
    """
    r = np.asarray(ranges, dtype=np.int64).reshape(-1, 2)
    if len(r) == 0:
        return "FALSE"
    terms = [f"{column} BETWEEN {int(lo)} AND {int(hi) - 1}" for lo, hi in r]
    return "(" + " OR ".join(terms) + ")"
