"""Every ADQL feature through the czar and real workers, checked against brute force.

Each question is asked twice: as ADQL through :class:`QueryEngine` (parse,
resolve, plan over ~40 small chunks on two workers, merge), and answered
independently over the unpartitioned input: plain DuckDB SQL over the
original Parquet files for relational questions, Python, numpy and astropy
for arithmetic, units and geometry. Floats must agree within 1e-9 relative.
Rows compare in any order unless the query has an ORDER BY.

The catalog adds a small table without positions, ``survey.Visit``, which
every task receives whole (CROSS JOIN with a small table), and which the
cancellation tests use to make the workers busy for as long as needed.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, cast

import astropy.units as u
import cdshealpix
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from qcat.czar.adql import AdqlSyntaxError
from qcat.czar.engine import QueryEngine
from qcat.czar.errors import ResolveError, UnsupportedQuery
from qcat.errors import QcatError
from qcat.geometry import Box, Polygon
from qcat.geometry.reference import boundary_distance_deg, inside_np, polygon_area_sq_deg
from qcat.worker.client import WorkerClient
from tests.engine_support import Catalog, Row, assert_rows_close, open_catalog, raw, run

#: Rows of survey.Visit; the cancellation tests join it twice with demo.Source.
VISITS = 400


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalog]:
    with open_catalog(tmp_path_factory.mktemp("features"), visits=VISITS) as opened:
        yield opened


def case(name: str, adql: str, sql: str, *, ordered: bool = False) -> object:
    """One (ADQL, oracle SQL) pair; ``ordered`` when the ADQL has a total ORDER BY."""
    return pytest.param(adql, sql, ordered, id=name)


def check(catalog: Catalog, adql: str, sql: str, ordered: bool) -> None:
    assert_rows_close(run(catalog, adql), raw(catalog, sql), ordered=ordered)


# -- strings, CAST, COALESCE, CASE -------------------------------------------------------------

STRINGS = [
    case(
        "lower-upper-concat",
        "SELECT objectId, LOWER(refBand), UPPER(refBand), refBand || '/' || objectId, "
        "UPPER(refBand) || LOWER('ABC') FROM demo.Object WHERE coord_dec > 70",
        "SELECT objectId, lower(refBand), upper(refBand), refBand || '/' || objectId, "
        "upper(refBand) || 'abc' FROM object WHERE coord_dec > 70",
    ),
    case(
        "like-ilike",
        "SELECT band, COUNT(*) FROM demo.Source WHERE band ILIKE 'G%' OR band LIKE '_' "
        "AND band NOT LIKE 'u' AND band NOT ILIKE 'Z' GROUP BY band",
        "SELECT band, count(*) FROM source WHERE band ILIKE 'g%' OR (band LIKE '_' "
        "AND band <> 'u' AND band <> 'z') GROUP BY band",
    ),
    case(
        "like-escape-matches-the-literal-character",
        "SELECT band, COUNT(*) FROM demo.Source WHERE band || '%x' LIKE '_!%x' ESCAPE '!' "
        "AND band || '_x' ILIKE 'G#_X' ESCAPE '#' GROUP BY band",
        "SELECT band, count(*) FROM source WHERE band = 'g' GROUP BY band",
    ),
    case(
        "like-escape-rejects-other-characters",
        "SELECT COUNT(*) FROM demo.Source WHERE band || 'ax' LIKE '_!_x' ESCAPE '!'",
        "SELECT 0::BIGINT",
    ),
    case(
        "coalesce-and-case",
        "SELECT objectId, COALESCE(u_psfMag, g_psfMag, -1), COALESCE(refExtendedness, 0.5), "
        "CASE refBand WHEN 'i' THEN 1 WHEN 'r' THEN 2 ELSE 0 END, "
        "CASE WHEN u_psfMag IS NULL THEN 'no u' WHEN u_psfMag < 24 THEN 'bright' END "
        "FROM demo.Object WHERE coord_dec > 60",
        "SELECT objectId, coalesce(u_psfMag, g_psfMag, -1), coalesce(refExtendedness, 0.5), "
        "CASE refBand WHEN 'i' THEN 1 WHEN 'r' THEN 2 ELSE 0 END, "
        "CASE WHEN u_psfMag IS NULL THEN 'no u' WHEN u_psfMag < 24 THEN 'bright' END "
        "FROM object WHERE coord_dec > 60",
    ),
    case(
        "case-in-group-by",
        "SELECT CASE WHEN g_psfMag IS NULL THEN -1 WHEN g_psfMag < 22 THEN 1 ELSE 0 END AS k, "
        "COUNT(*) FROM demo.Object "
        "GROUP BY CASE WHEN g_psfMag IS NULL THEN -1 WHEN g_psfMag < 22 THEN 1 ELSE 0 END "
        "ORDER BY k",
        "SELECT CASE WHEN g_psfMag IS NULL THEN -1 WHEN g_psfMag < 22 THEN 1 ELSE 0 END AS k, "
        "count(*) FROM object GROUP BY 1 ORDER BY k",
        ordered=True,
    ),
    case(
        "bitwise",
        "SELECT objectId, flags & 16, flags | 1, flags ^ 3, ~flags, 0x1F & flags "
        "FROM demo.Object WHERE flags & 8 = 8",
        "SELECT objectId, flags & 16, flags | 1, xor(flags, 3), ~flags, 31 & flags "
        "FROM object WHERE flags & 8 = 8",
    ),
]


@pytest.mark.parametrize(("adql", "sql", "ordered"), STRINGS)
def test_strings_and_conditionals(catalog: Catalog, adql: str, sql: str, ordered: bool) -> None:
    check(catalog, adql, sql, ordered)


def _half_away(x: float, digits: int = 0) -> float:
    """SQL's ROUND: halves away from zero."""
    q = Decimal(1).scaleb(-digits)
    return float(Decimal(x).quantize(q, rounding=ROUND_HALF_UP))


def _object_rows(catalog: Catalog, where: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    rows = catalog.demo.objects.to_pylist()
    return sorted((r for r in rows if where(r)), key=lambda r: r["objectId"])


def test_cast_to_every_adql_type(catalog: Catalog) -> None:
    halves = run(
        catalog,
        "SELECT TOP 1 CAST(2.5 AS INTEGER), CAST(POWER(2.5, 1) AS INTEGER), "
        "CAST(-3.5 * 1.0e0 AS SMALLINT) FROM demo.Object",
    )
    assert halves == [(3, 2, -4)]
    got = run(
        catalog,
        "SELECT objectId, CAST(coord_ra AS SMALLINT), CAST(coord_dec AS INTEGER), "
        "CAST(coord_ra * 1e7 AS BIGINT), CAST(coord_ra AS REAL), CAST(flags AS DOUBLE PRECISION), "
        "CAST(objectId AS CHAR(3)), CAST(refBand AS CHAR), CAST(objectId AS VARCHAR(5)), "
        "CAST(flags AS VARCHAR(40)), CAST('2024-01-02 03:04:05' AS TIMESTAMP), "
        "CAST(POINT(coord_ra, coord_dec) AS POINT), "
        "CAST(CIRCLE(coord_ra, coord_dec, 1) AS CIRCLE), "
        "CAST(POLYGON(1, 2, 3, 4, 5, 2) AS POLYGON) "
        "FROM demo.Object WHERE coord_dec > 70 ORDER BY objectId",
    )
    want: list[Row] = []
    for r in _object_rows(catalog, lambda r: r["coord_dec"] > 70):
        ra, dec, key, flags = r["coord_ra"], r["coord_dec"], r["objectId"], r["flags"]
        want.append(
            (
                key,
                round(ra),  # a double to an integer: to nearest, halves to even
                round(dec),
                round(ra * 1e7),
                float(np.float32(ra)),
                float(flags),
                str(key)[:3],
                str(r["refBand"])[:1],
                str(key)[:5],
                str(flags),
                datetime(2024, 1, 2, 3, 4, 5),
                [ra, dec],
                [ra, dec, 1.0],
                [1.0, 2.0, 3.0, 4.0, 5.0, 2.0],
            )
        )
    assert len(want) > 20
    assert_rows_close(got, want)


def test_in_unit_matches_astropy(catalog: Catalog) -> None:
    got = run(
        catalog,
        "SELECT s.sourceId, IN_UNIT(o.coord_ra, 'arcsec'), IN_UNIT(o.coord_raErr, 'mas'), "
        "IN_UNIT(s.psFlux, 'mJy'), IN_UNIT(s.midPointTai, 's'), IN_UNIT(o.g_psfMag, 'mmag') "
        "FROM demo.Object o JOIN demo.Source s ON s.objectId = o.objectId "
        "WHERE o.coord_dec > 75 ORDER BY s.sourceId",
    )
    base = raw(
        catalog,
        "SELECT s.sourceId, o.coord_ra, o.coord_raErr, s.psFlux, s.midPointTai, o.g_psfMag "
        "FROM object o JOIN source s ON s.objectId = o.objectId WHERE o.coord_dec > 75 "
        "ORDER BY s.sourceId",
    )
    units = {
        c.name: c.unit
        for c in (*catalog.demo.object_spec.columns, *catalog.demo.source_spec.columns)
    }

    def convert(value: Any, column: str, target: str) -> float | None:
        if value is None:
            return None
        unit = u.Unit(units[column], format="vounit")
        return float((value * unit).to(u.Unit(target, format="vounit")).value)

    want = [
        (
            key,
            convert(ra, "coord_ra", "arcsec"),
            convert(ra_err, "coord_raErr", "mas"),
            convert(flux, "psFlux", "mJy"),
            convert(t, "midPointTai", "s"),
            convert(mag, "g_psfMag", "mmag"),
        )
        for key, ra, ra_err, flux, t, mag in base
    ]
    assert len(want) > 20
    assert_rows_close(got, want)


# -- mathematics -----------------------------------------------------------------------------

MATH: list[tuple[str, Callable[[dict[str, Any]], float | int]]] = [
    ("ABS(coord_dec)", lambda r: abs(r["coord_dec"])),
    ("CEILING(coord_dec)", lambda r: float(math.ceil(r["coord_dec"]))),
    ("FLOOR(coord_dec)", lambda r: float(math.floor(r["coord_dec"]))),
    ("ROUND(coord_dec)", lambda r: _half_away(r["coord_dec"])),
    ("ROUND(coord_dec, 2)", lambda r: _half_away(r["coord_dec"], 2)),
    ("ROUND(coord_ra, -1)", lambda r: _half_away(r["coord_ra"], -1)),
    ("TRUNCATE(coord_dec)", lambda r: float(math.trunc(r["coord_dec"]))),
    ("TRUNCATE(coord_dec, 3)", lambda r: math.trunc(r["coord_dec"] * 1000) / 1000),
    ("MOD(objectId, 7)", lambda r: r["objectId"] % 7),
    ("MOD(coord_dec, 7)", lambda r: math.fmod(r["coord_dec"], 7)),
    ("POWER(coord_ra, 0.5)", lambda r: r["coord_ra"] ** 0.5),
    ("POWER(coord_dec, 3)", lambda r: r["coord_dec"] ** 3),
    ("SQRT(coord_ra)", lambda r: math.sqrt(r["coord_ra"])),
    ("EXP(coord_dec / 100)", lambda r: math.exp(r["coord_dec"] / 100)),
    ("LOG(coord_ra)", lambda r: math.log(r["coord_ra"])),
    ("LOG10(coord_ra)", lambda r: math.log10(r["coord_ra"])),
    ("PI()", lambda r: math.pi),
    ("SIN(RADIANS(coord_dec))", lambda r: math.sin(math.radians(r["coord_dec"]))),
    ("COS(coord_dec)", lambda r: math.cos(r["coord_dec"])),
    ("TAN(coord_dec)", lambda r: math.tan(r["coord_dec"])),
    ("COT(coord_dec)", lambda r: 1.0 / math.tan(r["coord_dec"])),
    ("ASIN(coord_dec / 90)", lambda r: math.asin(r["coord_dec"] / 90)),
    ("ACOS(coord_dec / 90)", lambda r: math.acos(r["coord_dec"] / 90)),
    ("ATAN(coord_dec)", lambda r: math.atan(r["coord_dec"])),
    ("ATAN2(coord_dec, coord_ra)", lambda r: math.atan2(r["coord_dec"], r["coord_ra"])),
    ("DEGREES(coord_dec)", lambda r: math.degrees(r["coord_dec"])),
    ("RADIANS(coord_ra)", lambda r: math.radians(r["coord_ra"])),
]


def test_math_and_trigonometry_match_python(catalog: Catalog) -> None:
    items = ", ".join(adql for adql, _ in MATH)
    got = run(
        catalog,
        f"SELECT objectId, {items} FROM demo.Object WHERE coord_dec > 70 ORDER BY objectId",
    )
    rows = _object_rows(catalog, lambda r: r["coord_dec"] > 70)
    want = [(r["objectId"], *(f(r) for _, f in MATH)) for r in rows]
    assert len(want) > 20
    assert_rows_close(got, want)


def test_rand_is_in_the_unit_interval(catalog: Catalog) -> None:
    values = run(catalog, "SELECT RAND(), RAND(7) FROM demo.Object WHERE coord_dec > 30")
    flat = [v for row in values for v in row]
    assert len(flat) > 100 and all(isinstance(v, float) and 0.0 <= v < 1.0 for v in flat)
    assert len(set(flat)) > len(flat) // 2  # random, not one constant


# -- set operations ------------------------------------------------------------------------------

SETS = [
    case(
        "union-order-offset",
        "SELECT objectId FROM demo.Object WHERE coord_dec > 75 UNION "
        "SELECT objectId FROM demo.Source WHERE band = 'u' AND dec > 70 "
        "ORDER BY objectId OFFSET 5",
        "SELECT objectId FROM object WHERE coord_dec > 75 UNION "
        "SELECT objectId FROM source WHERE band = 'u' AND dec > 70 ORDER BY objectId OFFSET 5",
        ordered=True,
    ),
    case(
        "union-all-mixed-tables",
        "SELECT band FROM demo.Source WHERE psFlux > 40000 UNION ALL "
        "SELECT refBand FROM demo.Object WHERE g_psfMag < 18",
        "SELECT band FROM source WHERE psFlux > 40000 UNION ALL "
        "SELECT refBand FROM object WHERE g_psfMag < 18",
    ),
    case(
        "intersect-order-desc",
        "SELECT objectId FROM demo.Object WHERE coord_dec > 60 INTERSECT "
        "SELECT objectId FROM demo.Source WHERE band = 'u' ORDER BY 1 DESC",
        "SELECT objectId FROM object WHERE coord_dec > 60 INTERSECT "
        "SELECT objectId FROM source WHERE band = 'u' ORDER BY 1 DESC",
        ordered=True,
    ),
    case(
        "except",
        "SELECT objectId FROM demo.Object WHERE coord_dec > 60 EXCEPT "
        "SELECT objectId FROM demo.Source WHERE band = 'u'",
        "SELECT objectId FROM object WHERE coord_dec > 60 EXCEPT "
        "SELECT objectId FROM source WHERE band = 'u'",
    ),
    case(
        "intersect-all-and-except-all",
        "SELECT band FROM demo.Source WHERE sourceId < 300 INTERSECT ALL "
        "SELECT refBand FROM demo.Object EXCEPT ALL SELECT 'i' FROM demo.Object "
        "WHERE objectId < 68719476800",
        "(SELECT band FROM source WHERE sourceId < 300 INTERSECT ALL "
        "SELECT refBand FROM object) EXCEPT ALL SELECT 'i' FROM object "
        "WHERE objectId < 68719476800",
    ),
    case(
        "top-in-each-operand",
        "(SELECT TOP 3 objectId FROM demo.Object ORDER BY objectId) UNION "
        "(SELECT TOP 2 objectId FROM demo.Object ORDER BY objectId DESC) ORDER BY objectId",
        "(SELECT objectId FROM object ORDER BY objectId LIMIT 3) UNION "
        "(SELECT objectId FROM object ORDER BY objectId DESC LIMIT 2) ORDER BY objectId",
        ordered=True,
    ),
    case(
        "top-offset-of-a-parenthesised-query",
        "(SELECT TOP 7 objectId FROM demo.Object ORDER BY objectId) "
        "ORDER BY objectId DESC OFFSET 2",
        "SELECT * FROM (SELECT objectId FROM object ORDER BY objectId LIMIT 7) "
        "ORDER BY objectId DESC OFFSET 2",
        ordered=True,
    ),
]


@pytest.mark.parametrize(("adql", "sql", "ordered"), SETS)
def test_set_operations(catalog: Catalog, adql: str, sql: str, ordered: bool) -> None:
    check(catalog, adql, sql, ordered)


# -- joins -------------------------------------------------------------------------------------

# The oracle's angular distance: the textbook haversine, in plain DuckDB SQL.
HAVERSINE = (
    "degrees(2 * asin(sqrt(pow(sin(radians({d2} - {d1}) / 2), 2) + cos(radians({d1})) "
    "* cos(radians({d2})) * pow(sin(radians({r2} - {r1}) / 2), 2))))"
)


def haversine(r1: str, d1: str, r2: str, d2: str) -> str:
    return HAVERSINE.format(r1=r1, d1=d1, r2=r2, d2=d2)


JOINS = [
    case(
        "inner-join-director-child",
        "SELECT o.objectId, COUNT(*), MAX(s.psFlux) FROM demo.Object o "
        "INNER JOIN demo.Source s ON s.objectId = o.objectId AND s.band = 'r' "
        "WHERE o.coord_dec > 40 GROUP BY o.objectId",
        "SELECT o.objectId, count(*), max(s.psFlux) FROM object o JOIN source s "
        "ON s.objectId = o.objectId AND s.band = 'r' WHERE o.coord_dec > 40 GROUP BY o.objectId",
    ),
    *(
        case(
            f"inner-join-director-child-in-a-cone-at-{ra}",
            "SELECT o.objectId, s.sourceId, s.psFlux FROM demo.Object o JOIN demo.Source s "
            "ON s.objectId = o.objectId "
            f"WHERE CONTAINS(POINT(o.coord_ra, o.coord_dec), CIRCLE({ra}, {dec}, 6)) = 1",
            "SELECT o.objectId, s.sourceId, s.psFlux FROM object o JOIN source s "
            "ON s.objectId = o.objectId WHERE {} < 6".format(
                haversine("o.coord_ra", "o.coord_dec", str(ra), str(dec))
            ),
        )
        for ra, dec in ((266.4, -28.9), (359.5, 0.5))
    ),
    case(
        "left-outer-join",
        "SELECT o.objectId, s.sourceId FROM demo.Object o LEFT OUTER JOIN demo.Source s "
        "ON s.objectId = o.objectId AND s.psFlux > 30000 WHERE o.coord_dec > 50",
        "SELECT o.objectId, s.sourceId FROM object o LEFT JOIN source s "
        "ON s.objectId = o.objectId AND s.psFlux > 30000 WHERE o.coord_dec > 50",
    ),
    case(
        "left-join-where-on-the-null-side",
        "SELECT COUNT(*), COUNT(s.sourceId) FROM demo.Object o LEFT JOIN demo.Source s "
        "ON s.objectId = o.objectId AND s.band = 'u' "
        "WHERE o.coord_dec > 50 AND (s.psFlux > 100 OR s.psFlux IS NULL)",
        "SELECT count(*), count(s.sourceId) FROM object o LEFT JOIN source s "
        "ON s.objectId = o.objectId AND s.band = 'u' "
        "WHERE o.coord_dec > 50 AND (s.psFlux > 100 OR s.psFlux IS NULL)",
    ),
    case(
        "right-outer-join",
        "SELECT COUNT(*), COUNT(o.objectId), COUNT(s.sourceId) FROM demo.Object o "
        "RIGHT OUTER JOIN demo.Source s ON s.objectId = o.objectId AND o.coord_dec > 0",
        "SELECT count(*), count(o.objectId), count(s.sourceId) FROM object o "
        "RIGHT JOIN source s ON s.objectId = o.objectId AND o.coord_dec > 0",
    ),
    case(
        "full-outer-join",
        "SELECT o.objectId, s.sourceId FROM demo.Object o FULL OUTER JOIN demo.Source s "
        "ON s.objectId = o.objectId AND s.band = 'g' AND s.psFlux > 20000 "
        "WHERE o.coord_dec > 70 OR s.dec > 70",
        "SELECT o.objectId, s.sourceId FROM object o FULL JOIN source s "
        "ON s.objectId = o.objectId AND s.band = 'g' AND s.psFlux > 20000 "
        "WHERE o.coord_dec > 70 OR s.dec > 70",
    ),
    case(
        "natural-join",
        "SELECT objectId, sourceId, coord_ra, psFlux FROM demo.Object NATURAL JOIN demo.Source "
        "WHERE coord_dec > 80",
        "SELECT objectId, sourceId, coord_ra, psFlux FROM object NATURAL JOIN source "
        "WHERE coord_dec > 80",
    ),
    case(
        "using-join",
        "SELECT objectId, s.psFlux FROM demo.Object AS o JOIN demo.Source AS s "
        "USING (objectId) WHERE o.coord_dec > 80",
        "SELECT objectId, s.psFlux FROM object o JOIN source s USING (objectId) "
        "WHERE o.coord_dec > 80",
    ),
    case(
        "left-join-using",
        "SELECT objectId, COUNT(s.sourceId) FROM demo.Object o LEFT JOIN "
        "(SELECT objectId, sourceId FROM demo.Source WHERE band = 'u' AND psFlux > 5000) AS s "
        "USING (objectId) WHERE o.coord_dec > 60 GROUP BY objectId",
        "SELECT objectId, count(s.sourceId) FROM object o LEFT JOIN "
        "(SELECT objectId, sourceId FROM source WHERE band = 'u' AND psFlux > 5000) s "
        "USING (objectId) WHERE o.coord_dec > 60 GROUP BY objectId",
    ),
    case(
        "cross-join-small-table",
        "SELECT v.band, COUNT(*), SUM(v.exposure) FROM demo.Object o CROSS JOIN survey.Visit v "
        "WHERE o.coord_dec > 80 AND v.exposure > 50 GROUP BY v.band",
        "SELECT v.band, count(*), sum(v.exposure) FROM object o CROSS JOIN visit v "
        "WHERE o.coord_dec > 80 AND v.exposure > 50 GROUP BY v.band",
    ),
    case(
        "comma-join-small-table-within-a-radius",
        "SELECT s.sourceId, v.visitId FROM demo.Source s, survey.Visit v "
        "WHERE s.band = v.band AND ANGDIST(s.ra, s.dec, v.pointRa, v.pointDec) < 2",
        "SELECT s.sourceId, v.visitId FROM source s, visit v WHERE s.band = v.band AND "
        + haversine("s.ra", "s.dec", "v.pointRa", "v.pointDec")
        + " < 2",
    ),
    case(
        "left-join-small-table",
        "SELECT v.visitId, COUNT(o.objectId) FROM survey.Visit v LEFT JOIN demo.Object o "
        "ON o.refBand = v.band AND o.coord_dec > 85 WHERE v.visitId < 40 GROUP BY v.visitId",
        "SELECT v.visitId, count(o.objectId) FROM visit v LEFT JOIN object o "
        "ON o.refBand = v.band AND o.coord_dec > 85 WHERE v.visitId < 40 GROUP BY v.visitId",
    ),
    case(
        "self-join",
        "SELECT a.objectId, b.objectId FROM demo.Object a JOIN demo.Object b "
        "ON a.refBand = b.refBand AND a.objectId < b.objectId "
        "WHERE a.coord_dec > 80 AND b.coord_dec > 80",
        "SELECT a.objectId, b.objectId FROM object a JOIN object b "
        "ON a.refBand = b.refBand AND a.objectId < b.objectId "
        "WHERE a.coord_dec > 80 AND b.coord_dec > 80",
    ),
    case(
        "self-join-of-the-child-table",
        "SELECT a.sourceId, b.sourceId FROM demo.Source a, demo.Source b "
        "WHERE a.objectId = b.objectId AND a.band = 'u' AND b.band = 'g' AND a.dec > 70",
        "SELECT a.sourceId, b.sourceId FROM source a, source b "
        "WHERE a.objectId = b.objectId AND a.band = 'u' AND b.band = 'g' AND a.dec > 70",
    ),
]


@pytest.mark.parametrize(("adql", "sql", "ordered"), JOINS)
def test_joins(catalog: Catalog, adql: str, sql: str, ordered: bool) -> None:
    check(catalog, adql, sql, ordered)


# -- subqueries -------------------------------------------------------------------------------

SUBQUERIES = [
    case(
        "derived-table",
        "SELECT t.band, t.n FROM (SELECT band, COUNT(*) AS n FROM demo.Source GROUP BY band) "
        "AS t WHERE t.n > 3000",
        "SELECT band, n FROM (SELECT band, count(*) AS n FROM source GROUP BY band) WHERE n > 3000",
    ),
    case(
        "derived-table-top-order-offset",
        "SELECT t.objectId, t.g_psfMag FROM (SELECT TOP 10 objectId, g_psfMag FROM demo.Object "
        "WHERE g_psfMag IS NOT NULL ORDER BY g_psfMag, objectId OFFSET 3) AS t "
        "ORDER BY t.objectId",
        "SELECT objectId, g_psfMag FROM (SELECT objectId, g_psfMag FROM object "
        "WHERE g_psfMag IS NOT NULL ORDER BY g_psfMag, objectId LIMIT 10 OFFSET 3) "
        "ORDER BY objectId",
        ordered=True,
    ),
    case(
        "nested-derived-tables",
        "SELECT MAX(u.n) FROM (SELECT t.objectId, COUNT(*) AS n FROM "
        "(SELECT objectId, band FROM demo.Source WHERE psFlux > 0) AS t "
        "GROUP BY t.objectId) AS u",
        "SELECT max(n) FROM (SELECT objectId, count(*) AS n FROM "
        "(SELECT objectId, band FROM source WHERE psFlux > 0) GROUP BY objectId)",
    ),
    case(
        "in-subquery",
        "SELECT objectId FROM demo.Object WHERE coord_dec > 30 AND objectId IN "
        "(SELECT objectId FROM demo.Source s WHERE s.band IN ('u', 'g') "
        "GROUP BY objectId HAVING COUNT(*) > 3)",
        "SELECT objectId FROM object WHERE coord_dec > 30 AND objectId IN "
        "(SELECT objectId FROM source s WHERE s.band IN ('u', 'g') "
        "GROUP BY objectId HAVING count(*) > 3)",
    ),
    case(
        "not-in-subquery",
        "SELECT COUNT(*) FROM demo.Object o WHERE o.objectId NOT IN "
        "(SELECT objectId FROM demo.Source WHERE band = 'u')",
        "SELECT count(*) FROM object o WHERE o.objectId NOT IN "
        "(SELECT objectId FROM source WHERE band = 'u')",
    ),
    case(
        "exists-correlated",
        "SELECT o.objectId FROM demo.Object o WHERE o.coord_dec > 50 AND EXISTS "
        "(SELECT 1 FROM demo.Source s WHERE s.objectId = o.objectId AND s.psFlux > 20000)",
        "SELECT o.objectId FROM object o WHERE o.coord_dec > 50 AND EXISTS "
        "(SELECT 1 FROM source s WHERE s.objectId = o.objectId AND s.psFlux > 20000)",
    ),
    case(
        "not-exists-correlated-on-two-columns",
        "SELECT COUNT(*) FROM demo.Object o WHERE NOT EXISTS (SELECT 1 FROM demo.Source s "
        "WHERE s.objectId = o.objectId AND s.psFlux > o.g_psfFlux * 3)",
        "SELECT count(*) FROM object o WHERE NOT EXISTS (SELECT 1 FROM source s "
        "WHERE s.objectId = o.objectId AND s.psFlux > o.g_psfFlux * 3)",
    ),
    case(
        "scalar-subqueries-in-select",
        "SELECT o.objectId, (SELECT MAX(psFlux) FROM demo.Source s WHERE "
        "s.objectId = o.objectId AND s.band = o.refBand) AS m, "
        "(SELECT COUNT(*) FROM demo.Source) AS total FROM demo.Object o WHERE o.coord_dec > 70",
        "SELECT o.objectId, (SELECT max(psFlux) FROM source s WHERE "
        "s.objectId = o.objectId AND s.band = o.refBand), (SELECT count(*) FROM source) "
        "FROM object o WHERE o.coord_dec > 70",
    ),
    case(
        "correlated-comparison",
        "SELECT COUNT(*) FROM demo.Object o WHERE o.g_psfMag < "
        "(SELECT AVG(p.g_psfMag) FROM demo.Object p WHERE p.refBand = o.refBand)",
        "SELECT count(*) FROM object o WHERE o.g_psfMag < "
        "(SELECT avg(p.g_psfMag) FROM object p WHERE p.refBand = o.refBand)",
    ),
    case(
        "subquery-in-having",
        "SELECT band, COUNT(*) FROM demo.Source GROUP BY band "
        "HAVING COUNT(*) > (SELECT COUNT(*) FROM demo.Object) * 2",
        "SELECT band, count(*) FROM source GROUP BY band "
        "HAVING count(*) > (SELECT count(*) FROM object) * 2",
    ),
    case(
        "several-ctes",
        "WITH bright AS (SELECT objectId, r_psfMag FROM demo.Object WHERE r_psfMag < 21), "
        "lc AS (SELECT objectId, COUNT(*) AS n FROM demo.Source GROUP BY objectId), "
        "busy AS (SELECT objectId FROM lc WHERE n >= 15) "
        "SELECT TOP 8 b.objectId, b.r_psfMag, lc.n FROM bright b JOIN lc "
        "ON lc.objectId = b.objectId WHERE b.objectId IN (SELECT objectId FROM busy) "
        "ORDER BY lc.n DESC, b.objectId",
        "WITH bright AS (SELECT objectId, r_psfMag FROM object WHERE r_psfMag < 21), "
        "lc AS (SELECT objectId, count(*) AS n FROM source GROUP BY objectId), "
        "busy AS (SELECT objectId FROM lc WHERE n >= 15) "
        "SELECT b.objectId, b.r_psfMag, lc.n FROM bright b JOIN lc ON lc.objectId = b.objectId "
        "WHERE b.objectId IN (SELECT objectId FROM busy) ORDER BY lc.n DESC, b.objectId LIMIT 8",
        ordered=True,
    ),
]


@pytest.mark.parametrize(("adql", "sql", "ordered"), SUBQUERIES)
def test_subqueries(catalog: Catalog, adql: str, sql: str, ordered: bool) -> None:
    check(catalog, adql, sql, ordered)


CONE_CTE = (
    "WITH c AS (SELECT objectId, r_psfMag AS m FROM demo.Object "
    "WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(266.4, -28.9, 6)) = 1) "
)
RAW_CONE = "{} < 6".format(haversine("coord_ra", "coord_dec", "266.4", "-28.9"))

#: Subqueries that sqlglot writes into the query, which then runs chunk by chunk.
WRITTEN_IN = [
    case(
        "cte-director-child-join",
        CONE_CTE + "SELECT s.objectId, COUNT(*), SUM(s.psFlux) FROM demo.Source s "
        "JOIN c ON s.objectId = c.objectId WHERE c.m < 24 GROUP BY s.objectId",
        f"SELECT s.objectId, count(*), sum(s.psFlux) FROM source s JOIN object o "
        f"ON s.objectId = o.objectId WHERE {RAW_CONE} AND o.r_psfMag < 24 GROUP BY s.objectId",
    ),
    case(
        "derived-table-director-child-join",
        "SELECT t.objectId, t.gr, s.sourceId FROM demo.Source AS s JOIN "
        "(SELECT objectId, g_psfMag - r_psfMag AS gr FROM demo.Object WHERE coord_dec > 60) "
        "AS t ON t.objectId = s.objectId WHERE t.gr > 0.2 AND s.band = 'g' "
        "ORDER BY s.sourceId",
        "SELECT o.objectId, o.g_psfMag - o.r_psfMag, s.sourceId FROM source s JOIN object o "
        "ON o.objectId = s.objectId WHERE o.coord_dec > 60 AND o.g_psfMag - o.r_psfMag > 0.2 "
        "AND s.band = 'g' ORDER BY s.sourceId",
        ordered=True,
    ),
    case(
        "derived-table-cone",
        "SELECT t.objectId, t.gr FROM (SELECT objectId, coord_ra, coord_dec, "
        "g_psfMag - r_psfMag AS gr FROM demo.Object) AS t "
        "WHERE CONTAINS(POINT(t.coord_ra, t.coord_dec), CIRCLE(266.4, -28.9, 6)) = 1",
        f"SELECT objectId, g_psfMag - r_psfMag FROM object WHERE {RAW_CONE}",
    ),
]


@pytest.mark.parametrize(("adql", "sql", "ordered"), WRITTEN_IN)
def test_subqueries_written_into_the_query(
    catalog: Catalog, adql: str, sql: str, ordered: bool
) -> None:
    check(catalog, adql, sql, ordered)
    plan = catalog.engine.explain(adql)
    assert plan.shape == "chunk-local", plan.notes
    assert plan.notes[0].startswith("subqueries (WITH, FROM) written into the query")


#: Subqueries that read only rows in each outer row's chunk: run chunk by chunk.
COLOCATED = [
    case(
        "correlated-scalar-in-select",
        "SELECT o.objectId, (SELECT MAX(s.psFlux) FROM demo.Source s "
        "WHERE s.objectId = o.objectId AND s.band = 'r') AS m FROM demo.Object o "
        "WHERE o.coord_dec > 60",
        "SELECT o.objectId, (SELECT max(s.psFlux) FROM source s "
        "WHERE s.objectId = o.objectId AND s.band = 'r') FROM object o WHERE o.coord_dec > 60",
    ),
    case(
        "correlated-scalar-in-select-in-a-cone",
        "SELECT o.objectId, (SELECT MAX(s.psFlux) FROM demo.Source s "
        "WHERE s.objectId = o.objectId) AS m FROM demo.Object o "
        "WHERE CONTAINS(POINT(o.coord_ra, o.coord_dec), CIRCLE(266.4, -28.9, 6)) = 1",
        "SELECT o.objectId, (SELECT max(s.psFlux) FROM source s "
        f"WHERE s.objectId = o.objectId) FROM object o WHERE {RAW_CONE}",
    ),
    case(
        "not-exists-under-an-aggregate",
        "SELECT o.refBand, COUNT(*) FROM demo.Object o WHERE NOT EXISTS (SELECT 1 FROM "
        "demo.Source s WHERE s.objectId = o.objectId AND s.band = 'u') GROUP BY o.refBand",
        "SELECT o.refBand, count(*) FROM object o WHERE NOT EXISTS (SELECT 1 FROM source s "
        "WHERE s.objectId = o.objectId AND s.band = 'u') GROUP BY o.refBand",
    ),
    case(
        "child-asks-its-director",
        "SELECT s.sourceId, s.psFlux FROM demo.Source s WHERE s.dec > 70 AND EXISTS "
        "(SELECT 1 FROM demo.Object o WHERE o.objectId = s.objectId AND o.r_psfMag < 22)",
        "SELECT s.sourceId, s.psFlux FROM source s WHERE s.dec > 70 AND EXISTS "
        "(SELECT 1 FROM object o WHERE o.objectId = s.objectId AND o.r_psfMag < 22)",
    ),
    case(
        "correlated-in-and-top-in-select",
        "SELECT o.objectId, CASE WHEN o.refBand IN (SELECT s.band FROM demo.Source s "
        "WHERE s.objectId = o.objectId AND s.psFlux > 20000) THEN 1 ELSE 0 END AS seen, "
        "(SELECT TOP 1 s.band FROM demo.Source s WHERE s.objectId = o.objectId "
        "ORDER BY s.psFlux DESC, s.sourceId) AS brightest FROM demo.Object o "
        "WHERE o.coord_dec < -60",
        "SELECT o.objectId, CASE WHEN o.refBand IN (SELECT s.band FROM source s "
        "WHERE s.objectId = o.objectId AND s.psFlux > 20000) THEN 1 ELSE 0 END, "
        "(SELECT s.band FROM source s WHERE s.objectId = o.objectId "
        "ORDER BY s.psFlux DESC, s.sourceId LIMIT 1) FROM object o WHERE o.coord_dec < -60",
    ),
    case(
        "key-in-grouped-child",
        "SELECT o.objectId, o.r_psfMag FROM demo.Object o WHERE o.coord_dec > 30 AND "
        "o.objectId IN (SELECT s.objectId FROM demo.Source s WHERE s.band IN ('u', 'g') "
        "GROUP BY s.objectId HAVING COUNT(*) > 3)",
        "SELECT o.objectId, o.r_psfMag FROM object o WHERE o.coord_dec > 30 AND "
        "o.objectId IN (SELECT s.objectId FROM source s WHERE s.band IN ('u', 'g') "
        "GROUP BY s.objectId HAVING count(*) > 3)",
    ),
]


@pytest.mark.parametrize(("adql", "sql", "ordered"), COLOCATED)
def test_subqueries_answered_chunk_by_chunk(
    catalog: Catalog, adql: str, sql: str, ordered: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An IN list is not answered first here: the subquery runs inside each chunk.
    monkeypatch.setattr("qcat.czar.semijoin.MAX_INLINED_VALUES", 0)
    check(catalog, adql, sql, ordered)
    plan = catalog.engine.explain(adql)
    assert "shape: chunk-local (director-child)" in plan.notes, plan.notes


#: Grouped by a key the tables are partitioned by: each chunk computes its groups whole.
GROUPED_BY_KEY = [
    case(
        "child-by-its-key-with-having-and-distinct",
        "SELECT objectId, COUNT(*), AVG(psFlux), COUNT(DISTINCT band), STDDEV(psFlux) "
        "FROM demo.Source GROUP BY objectId HAVING COUNT(*) > 15",
        "SELECT objectId, count(*), avg(psFlux), count(DISTINCT band), stddev(psFlux) "
        "FROM source GROUP BY objectId HAVING count(*) > 15",
    ),
    case(
        "top-groups-by-an-aggregate",
        "SELECT TOP 7 objectId, COUNT(*) AS n, MAX(psFlux) FROM demo.Source "
        "GROUP BY objectId ORDER BY n DESC, objectId OFFSET 2",
        "SELECT objectId, count(*) AS n, max(psFlux) FROM source "
        "GROUP BY objectId ORDER BY n DESC, objectId LIMIT 7 OFFSET 2",
        ordered=True,
    ),
    case(
        "key-and-another-column",
        "SELECT objectId, band, COUNT(*) FROM demo.Source WHERE dec > 40 "
        "GROUP BY objectId, band HAVING COUNT(*) > 2",
        "SELECT objectId, band, count(*) FROM source WHERE dec > 40 "
        "GROUP BY objectId, band HAVING count(*) > 2",
    ),
    case(
        "director-child-join-by-the-director-key",
        "SELECT o.objectId, o.r_psfMag, COUNT(*) AS n, MIN(s.psFlux) FROM demo.Object o "
        "JOIN demo.Source s ON s.objectId = o.objectId WHERE o.coord_dec < -40 "
        "GROUP BY o.objectId, o.r_psfMag HAVING COUNT(*) >= 10 ORDER BY o.objectId",
        "SELECT o.objectId, o.r_psfMag, count(*) AS n, min(s.psFlux) FROM object o "
        "JOIN source s ON s.objectId = o.objectId WHERE o.coord_dec < -40 "
        "GROUP BY o.objectId, o.r_psfMag HAVING count(*) >= 10 ORDER BY o.objectId",
        ordered=True,
    ),
]


@pytest.mark.parametrize(("adql", "sql", "ordered"), GROUPED_BY_KEY)
def test_groups_by_a_key_are_computed_whole_in_each_chunk(
    catalog: Catalog, adql: str, sql: str, ordered: bool
) -> None:
    check(catalog, adql, sql, ordered)
    query_plan = catalog.engine.explain(adql)
    assert "grouped by a key: each chunk computes its groups whole" in query_plan.notes
    # and alone: a worker's chunks bound together would hold all their groups at once
    assert not query_plan.chunk_queries[0].batchable


#: Derived tables whose rows over a chunk are their rows from that chunk.
DERIVED_BY_CHUNK = [
    case(
        "count-of-groups-with-having",
        "SELECT COUNT(*), MAX(t.n) FROM (SELECT objectId, COUNT(*) AS n FROM demo.Source "
        "GROUP BY objectId HAVING COUNT(*) > 15) AS t",
        "SELECT count(*), max(n) FROM (SELECT objectId, count(*) AS n FROM source "
        "GROUP BY objectId HAVING count(*) > 15)",
    ),
    case(
        "director-joined-with-grouped-child",
        "SELECT o.objectId, o.r_psfMag, lc.n, lc.f FROM demo.Object o JOIN "
        "(SELECT objectId, COUNT(*) AS n, AVG(psFlux) AS f FROM demo.Source "
        "WHERE band = 'r' GROUP BY objectId) AS lc ON lc.objectId = o.objectId "
        "WHERE CONTAINS(POINT(o.coord_ra, o.coord_dec), CIRCLE(266.4, -28.9, 6)) = 1",
        "SELECT o.objectId, o.r_psfMag, lc.n, lc.f FROM object o JOIN "
        "(SELECT objectId, count(*) AS n, avg(psFlux) AS f FROM source WHERE band = 'r' "
        f"GROUP BY objectId) lc ON lc.objectId = o.objectId WHERE {RAW_CONE}",
    ),
    case(
        "grouped-child-in-a-cone-then-grouped-again",
        "SELECT t.band, COUNT(*), AVG(t.f) FROM (SELECT objectId, band, AVG(psFlux) AS f "
        "FROM demo.Source WHERE CONTAINS(POINT(ra, dec), CIRCLE(266.4, -28.9, 6)) = 1 "
        "GROUP BY objectId, band) AS t WHERE t.f > 1000 GROUP BY t.band",
        "SELECT band, count(*), avg(f) FROM (SELECT objectId, band, avg(psFlux) AS f "
        "FROM source WHERE {} < 6 GROUP BY objectId, band) WHERE f > 1000 GROUP BY band".format(
            haversine("ra", "dec", "266.4", "-28.9")
        ),
    ),
]


DERIVED_BY_CHUNK += [
    case(
        "grouped-cte-joined-with-its-director",
        "WITH lc AS (SELECT objectId, COUNT(*) AS n FROM demo.Source GROUP BY objectId) "
        "SELECT o.objectId, lc.n FROM demo.Object o JOIN lc ON lc.objectId = o.objectId "
        "WHERE o.coord_dec > 60 ORDER BY lc.n DESC, o.objectId",
        "WITH lc AS (SELECT objectId, count(*) AS n FROM source GROUP BY objectId) "
        "SELECT o.objectId, lc.n FROM object o JOIN lc ON lc.objectId = o.objectId "
        "WHERE o.coord_dec > 60 ORDER BY lc.n DESC, o.objectId",
        ordered=True,
    ),
    case(
        "grouped-cte-joined-with-the-objects-of-a-cone",
        "WITH lc AS (SELECT objectId, COUNT(*) AS n, MAX(psFlux) AS m FROM demo.Source "
        "GROUP BY objectId HAVING COUNT(*) > 5) "
        "SELECT o.objectId, lc.n, lc.m FROM demo.Object o JOIN lc ON lc.objectId = o.objectId "
        "WHERE CONTAINS(POINT(o.coord_ra, o.coord_dec), CIRCLE(266.4, -28.9, 6)) = 1",
        "WITH lc AS (SELECT objectId, count(*) AS n, max(psFlux) AS m FROM source "
        "GROUP BY objectId HAVING count(*) > 5) "
        "SELECT o.objectId, lc.n, lc.m FROM object o JOIN lc ON lc.objectId = o.objectId "
        f"WHERE {RAW_CONE}",
    ),
    case(
        "count-of-a-grouped-cte",
        "WITH busy AS (SELECT objectId FROM demo.Source GROUP BY objectId "
        "HAVING COUNT(*) > 15) SELECT COUNT(*) FROM busy",
        "WITH busy AS (SELECT objectId FROM source GROUP BY objectId "
        "HAVING count(*) > 15) SELECT count(*) FROM busy",
    ),
]


@pytest.mark.parametrize(("adql", "sql", "ordered"), DERIVED_BY_CHUNK)
def test_derived_tables_computed_by_each_chunk(
    catalog: Catalog, adql: str, sql: str, ordered: bool
) -> None:
    check(catalog, adql, sql, ordered)
    plan = catalog.engine.explain(adql)
    assert plan.shape == "chunk-local", plan.notes
    assert any(n.startswith("derived table ") for n in plan.notes), plan.notes


def test_a_directors_region_selects_its_joined_childs_rows(catalog: Catalog) -> None:
    """In an inner join on the director key, a child row carries its director's
    _healpix_29: the director's region is a row filter on the child too, inside a
    derived table grouped by the key; not on a child read by a subquery."""
    cone = "CONTAINS(POINT(o.coord_ra, o.coord_dec), CIRCLE(266.4, -28.9, 6)) = 1"
    joined = (
        "SELECT o.objectId, lc.n FROM demo.Object o JOIN (SELECT objectId, COUNT(*) AS n "
        f"FROM demo.Source GROUP BY objectId) AS lc ON lc.objectId = o.objectId WHERE {cone}"
    )
    sql = catalog.engine.explain(joined).chunk_queries[0].sql
    inner = sql[sql.index("(SELECT") : sql.index("GROUP BY")]
    assert "source._healpix_29 BETWEEN" in inner, sql
    plain = (
        "SELECT o.objectId, s.psFlux FROM demo.Object o JOIN demo.Source s "
        f"ON s.objectId = o.objectId WHERE {cone}"
    )
    assert "s._healpix_29 BETWEEN" in catalog.engine.explain(plain).chunk_queries[0].sql
    outer = plain.replace(" JOIN ", " LEFT JOIN ")
    assert "s._healpix_29" not in catalog.engine.explain(outer).chunk_queries[0].sql
    # Correct answers for these shapes are checked against DuckDB in DERIVED_BY_CHUNK,
    # COLOCATED and JOINS.


def test_outer_terms_on_group_keys_select_a_derived_tables_chunks(catalog: Catalog) -> None:
    """A term of the query about a derived table's group keys holds for whole groups, so
    it selects the derived table's chunks and rows; terms on aggregates, on other tables
    or under an outer join do not."""
    (key,), (other,) = raw(
        catalog, "SELECT objectId FROM source ORDER BY objectId LIMIT 2 OFFSET 999"
    )
    grouped = (
        "(SELECT objectId, band, COUNT(*) AS n, AVG(psFlux) AS f FROM {} GROUP BY objectId, band)"
    )
    pruned = [
        f"SELECT * FROM {grouped} AS t WHERE t.objectId = {key}",
        f"SELECT t.objectId, t.band, t.n FROM {grouped} AS t "
        f"WHERE t.objectId IN ({key}, {other}) AND t.n > 1 AND t.band <> 'u'",
        f"WITH lc AS {grouped} SELECT * FROM lc WHERE lc.objectId = {key} ORDER BY lc.band",
        "SELECT t.objectId, t.n FROM (SELECT objectId, coord_ra, coord_dec, COUNT(*) AS n "
        "FROM {} GROUP BY objectId, coord_ra, coord_dec) AS t "
        "WHERE CONTAINS(POINT(t.coord_ra, t.coord_dec), CIRCLE(266.4, -28.9, 2)) = 1",
    ]
    chunks = len(catalog.engine.catalog().table("demo.Source").chunks)
    for i, query in enumerate(pruned):
        table = "demo.Object" if "coord_ra" in query else "demo.Source"
        adql = query.format(table)
        sql = query.format("object" if table == "demo.Object" else "source")
        if "CONTAINS" in sql:
            sql = sql.replace(
                "CONTAINS(POINT(t.coord_ra, t.coord_dec), CIRCLE(266.4, -28.9, 2)) = 1",
                haversine("t.coord_ra", "t.coord_dec", "266.4", "-28.9") + " < 2",
            )
        want = raw(catalog, sql)
        assert want, adql
        assert_rows_close(run(catalog, adql), want, ordered="ORDER BY" in adql)
        notes = " / ".join(catalog.engine.explain(adql).notes)
        assert "term(s) of the query on its group keys" in notes, notes
        tasks = int(notes.split(" chunk task(s)")[0].rsplit(" ", 1)[-1])
        assert tasks < chunks, (i, notes)
    kept = [  # an aggregate, another table, an outer join: nothing moves inside
        f"SELECT t.objectId FROM {grouped} AS t WHERE t.n > 24",
        f"SELECT o.objectId, t.n FROM demo.Object AS o JOIN {grouped} AS t "
        f"ON t.objectId = o.objectId WHERE t.objectId + 0 = o.objectId AND o.objectId = {key}",
        f"SELECT o.objectId, t.n FROM demo.Object AS o LEFT JOIN {grouped} AS t "
        f"ON t.objectId = o.objectId AND t.band = 'g' WHERE o.objectId = {key} AND t.n IS NULL",
    ]
    for query in kept:
        adql = query.format("demo.Source")
        sql = adql.replace("demo.Object AS", "object").replace("demo.Source", "source")
        assert_rows_close(run(catalog, adql), raw(catalog, sql), ordered=False)
        notes = " / ".join(catalog.engine.explain(adql).notes)
        assert "term(s) of the query on its group keys" not in notes, notes


def test_derived_tables_chunks_cannot_compute_are_gathered(catalog: Catalog) -> None:
    """Grouped by another column, cut by TOP, or joined otherwise than on the key."""
    for adql, sql in (
        (
            "SELECT COUNT(*) FROM (SELECT band, COUNT(*) AS n FROM demo.Source GROUP BY band) "
            "AS t WHERE t.n > 10",
            "SELECT count(*) FROM (SELECT band, count(*) AS n FROM source GROUP BY band) "
            "WHERE n > 10",
        ),
        (
            "SELECT SUM(t.psFlux) FROM (SELECT TOP 20 psFlux FROM demo.Source "
            "ORDER BY psFlux DESC) AS t",
            "SELECT sum(psFlux) FROM (SELECT psFlux FROM source ORDER BY psFlux DESC LIMIT 20)",
        ),
        (
            "SELECT COUNT(*) FROM demo.Object o JOIN (SELECT objectId + 2 AS objectId, "
            "COUNT(*) AS n FROM demo.Source GROUP BY objectId) AS t ON t.objectId = o.objectId "
            "WHERE o.coord_dec > 80",
            "SELECT count(*) FROM object o JOIN (SELECT objectId + 2 AS objectId, count(*) AS n "
            "FROM source GROUP BY objectId) t ON t.objectId = o.objectId WHERE o.coord_dec > 80",
        ),
        (
            "SELECT COUNT(*) FROM demo.Object o JOIN (SELECT objectId, MAX(psFlux) AS m "
            "FROM demo.Source GROUP BY objectId) AS t ON t.m > o.g_psfFlux * 40 "
            "WHERE o.coord_dec > 80",
            "SELECT count(*) FROM object o JOIN (SELECT objectId, max(psFlux) AS m "
            "FROM source GROUP BY objectId) t ON t.m > o.g_psfFlux * 40 WHERE o.coord_dec > 80",
        ),
    ):
        check(catalog, adql, sql, ordered=False)
        assert catalog.engine.explain(adql).shape == "gather", adql


def test_subqueries_reaching_other_chunks_are_gathered(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not correlated on the key, negated, grouped by another column, or in an
    aggregate's merge: their rows are not all in one chunk, so they are gathered."""
    monkeypatch.setattr("qcat.czar.semijoin.MAX_INLINED_VALUES", 0)
    for adql, sql in (
        (
            "SELECT COUNT(*) FROM demo.Object o WHERE o.objectId NOT IN "
            "(SELECT s.objectId FROM demo.Source s WHERE s.band = 'u')",
            "SELECT count(*) FROM object o WHERE o.objectId NOT IN "
            "(SELECT s.objectId FROM source s WHERE s.band = 'u')",
        ),
        (
            "SELECT o.objectId FROM demo.Object o WHERE o.coord_dec > 70 AND EXISTS "
            "(SELECT 1 FROM demo.Source s WHERE s.psFlux > o.g_psfFlux * 50)",
            "SELECT o.objectId FROM object o WHERE o.coord_dec > 70 AND EXISTS "
            "(SELECT 1 FROM source s WHERE s.psFlux > o.g_psfFlux * 50)",
        ),
        (
            "SELECT COUNT(*) FROM demo.Object o WHERE o.objectId IN (SELECT MIN(s.objectId) "
            "FROM demo.Source s GROUP BY s.band)",
            "SELECT count(*) FROM object o WHERE o.objectId IN (SELECT min(s.objectId) "
            "FROM source s GROUP BY s.band)",
        ),
        (
            "SELECT MAX((SELECT COUNT(*) FROM demo.Source s WHERE s.objectId = o.objectId)) "
            "FROM demo.Object o WHERE o.coord_dec > 60",
            "SELECT max((SELECT count(*) FROM source s WHERE s.objectId = o.objectId)) "
            "FROM object o WHERE o.coord_dec > 60",
        ),
    ):
        check(catalog, adql, sql, ordered=False)
        assert catalog.engine.explain(adql).shape == "gather", adql


def test_subqueries_that_cannot_be_written_in_are_still_gathered(catalog: Catalog) -> None:
    # An aggregate, a TOP and an outer join that a merge would change stay as written.
    for adql, sql in (
        (
            "SELECT COUNT(*) FROM demo.Source s JOIN (SELECT objectId, COUNT(*) AS n FROM "
            "demo.Source GROUP BY objectId) AS t ON t.objectId = s.objectId WHERE t.n > 15",
            "SELECT count(*) FROM source s JOIN (SELECT objectId, count(*) AS n FROM source "
            "GROUP BY objectId) t ON t.objectId = s.objectId WHERE t.n > 15",
        ),
        (
            "SELECT s.sourceId FROM demo.Source s JOIN (SELECT TOP 3 objectId FROM demo.Object "
            "ORDER BY r_psfMag, objectId) AS t ON t.objectId = s.objectId",
            "SELECT s.sourceId FROM source s JOIN (SELECT objectId FROM object "
            "ORDER BY r_psfMag NULLS LAST, objectId LIMIT 3) t ON t.objectId = s.objectId",
        ),
        (
            "SELECT o.objectId, t.n FROM demo.Object o LEFT JOIN (SELECT objectId, 1 AS n "
            "FROM demo.Source WHERE band = 'u') AS t ON t.objectId = o.objectId "
            "WHERE o.coord_dec > 80",
            "SELECT o.objectId, t.n FROM object o LEFT JOIN (SELECT objectId, 1 AS n "
            "FROM source WHERE band = 'u') t ON t.objectId = o.objectId WHERE o.coord_dec > 80",
        ),
    ):
        check(catalog, adql, sql, ordered=False)
        assert catalog.engine.explain(adql).shape == "gather"


# -- aggregates -------------------------------------------------------------------------------

AGGREGATES = [
    case(
        "variance-family-by-two-columns-having",
        "SELECT band, psfFlag, COUNT(*), STDDEV(psFlux), STDDEV_SAMP(psFlux), "
        "STDDEV_POP(psFlux), VARIANCE(psFlux), VAR_SAMP(psFlux), VAR_POP(psFlux) "
        "FROM demo.Source GROUP BY band, psfFlag HAVING COUNT(*) > 5 ORDER BY band, psfFlag",
        "SELECT band, psfFlag, count(*), stddev_samp(psFlux), stddev_samp(psFlux), "
        "stddev_pop(psFlux), var_samp(psFlux), var_samp(psFlux), var_pop(psFlux) "
        "FROM source GROUP BY band, psfFlag HAVING count(*) > 5 ORDER BY band, psfFlag",
        ordered=True,
    ),
    case(
        "count-distinct-and-string-extremes",
        "SELECT o.refBand, COUNT(DISTINCT s.band), MIN(s.band), MAX(s.band), "
        "MIN(LOWER(s.band) || 'x'), COUNT(*) FROM demo.Source s "
        "JOIN demo.Object o ON o.objectId = s.objectId GROUP BY o.refBand",
        "SELECT o.refBand, count(DISTINCT s.band), min(s.band), max(s.band), "
        "min(lower(s.band) || 'x'), count(*) FROM source s "
        "JOIN object o ON o.objectId = s.objectId GROUP BY o.refBand",
    ),
    case(
        "sum-and-avg-distinct",
        "SELECT SUM(DISTINCT flags), AVG(DISTINCT flags), COUNT(DISTINCT flags) FROM demo.Object",
        "SELECT sum(DISTINCT flags), avg(DISTINCT flags), count(DISTINCT flags) FROM object",
    ),
    case(
        "group-by-expression-and-column-having",
        "SELECT FLOOR(coord_dec / 10) * 10 AS d, refBand, COUNT(*), "
        "AVG(g_psfMag - r_psfMag), STDDEV(g_psfMag - r_psfMag) FROM demo.Object "
        "GROUP BY FLOOR(coord_dec / 10) * 10, refBand HAVING COUNT(*) >= 2 ORDER BY 1, 2",
        "SELECT floor(coord_dec / 10) * 10 AS d, refBand, count(*), avg(g_psfMag - r_psfMag), "
        "stddev_samp(g_psfMag - r_psfMag) FROM object GROUP BY 1, 2 HAVING count(*) >= 2 "
        "ORDER BY 1, 2",
        ordered=True,
    ),
    case(
        "having-on-aggregates-not-selected",
        "SELECT band, MIN(psFlux) FROM demo.Source GROUP BY band "
        "HAVING MAX(psFlux) > 1e6 AND COUNT(DISTINCT ccdVisitId) > 10",
        "SELECT band, min(psFlux) FROM source GROUP BY band "
        "HAVING max(psFlux) > 1e6 AND count(DISTINCT ccdVisitId) > 10",
    ),
    case(
        "aggregates-of-expressions",
        "SELECT COUNT(u_psfMag), COUNT(*), AVG(u_psfMag), SUM(u_psfMag * 2 + 1), "
        "MAX(u_psfMag - g_psfMag), SUM(flags) / COUNT(flags), AVG(CAST(flags AS REAL)) "
        "FROM demo.Object",
        "SELECT count(u_psfMag), count(*), avg(u_psfMag), sum(u_psfMag * 2 + 1), "
        "max(u_psfMag - g_psfMag), sum(flags) / count(flags), avg(CAST(flags AS REAL)) "
        "FROM object",
    ),
    case(
        "over-an-empty-selection",
        "SELECT COUNT(*), COUNT(psFlux), SUM(psFlux), AVG(psFlux), MIN(band), MAX(band), "
        "STDDEV(psFlux), VAR_POP(psFlux), COUNT(DISTINCT band) FROM demo.Source "
        "WHERE psFlux > 1e30",
        "SELECT count(*), count(psFlux), sum(psFlux), avg(psFlux), min(band), max(band), "
        "stddev_samp(psFlux), var_pop(psFlux), count(DISTINCT band) FROM source "
        "WHERE psFlux > 1e30",
    ),
    case(
        "grouped-over-an-empty-selection",
        "SELECT band, COUNT(*) FROM demo.Source WHERE psFlux > 1e30 GROUP BY band",
        "SELECT band, count(*) FROM source WHERE psFlux > 1e30 GROUP BY band",
    ),
    case(
        "over-no-chunk-at-all",
        "SELECT COUNT(*), SUM(flags), MIN(refBand), STDDEV(coord_dec) FROM demo.Object "
        "WHERE objectId = 1",
        "SELECT count(*), sum(flags), min(refBand), stddev_samp(coord_dec) FROM object "
        "WHERE objectId = 1",
    ),
    case(
        "over-one-row",
        "SELECT COUNT(*), STDDEV(coord_dec), STDDEV_POP(coord_dec), VAR_SAMP(coord_dec), "
        "VAR_POP(coord_dec) FROM demo.Object WHERE objectId = 68719476747",
        "SELECT count(*), stddev_samp(coord_dec), stddev_pop(coord_dec), var_samp(coord_dec), "
        "var_pop(coord_dec) FROM object WHERE objectId = 68719476747",
    ),
    case(
        "nulls-only",
        "SELECT COUNT(*), COUNT(u_psfMag), COUNT(DISTINCT u_psfMag), SUM(u_psfMag), "
        "AVG(u_psfMag), MAX(u_psfMag) FROM demo.Object WHERE u_psfMag IS NULL",
        "SELECT count(*), count(u_psfMag), count(DISTINCT u_psfMag), sum(u_psfMag), "
        "avg(u_psfMag), max(u_psfMag) FROM object WHERE u_psfMag IS NULL",
    ),
    case(
        "null-group",
        "SELECT refExtendedness, COUNT(*), AVG(r_psfMag) FROM demo.Object "
        "GROUP BY refExtendedness ORDER BY refExtendedness",
        "SELECT refExtendedness, count(*), avg(r_psfMag) FROM object "
        "GROUP BY refExtendedness ORDER BY refExtendedness NULLS LAST",
        ordered=True,
    ),
    case(
        "nulls-last-ascending",
        "SELECT TOP 5 objectId, u_psfMag FROM demo.Object WHERE coord_dec > 60 "
        "ORDER BY u_psfMag, objectId OFFSET 150",
        "SELECT objectId, u_psfMag FROM object WHERE coord_dec > 60 "
        "ORDER BY u_psfMag NULLS LAST, objectId LIMIT 5 OFFSET 150",
        ordered=True,
    ),
    case(
        "top-by-count-distinct",
        "SELECT TOP 2 band, COUNT(DISTINCT objectId) AS n FROM demo.Source GROUP BY band "
        "ORDER BY n DESC",
        "SELECT band, count(DISTINCT objectId) AS n FROM source GROUP BY band "
        "ORDER BY n DESC LIMIT 2",
        ordered=True,
    ),
    case(
        "distinct-rows",
        "SELECT DISTINCT refBand, refExtendedness FROM demo.Object",
        "SELECT DISTINCT refBand, refExtendedness FROM object",
    ),
]


@pytest.mark.parametrize(("adql", "sql", "ordered"), AGGREGATES)
def test_aggregates(catalog: Catalog, adql: str, sql: str, ordered: bool) -> None:
    check(catalog, adql, sql, ordered)


NULLS_FIRST_DESC = [
    case(
        "top-order-by-desc",
        "SELECT TOP 5 objectId, u_psfMag FROM demo.Object ORDER BY u_psfMag DESC, objectId",
        "SELECT objectId, u_psfMag FROM object ORDER BY u_psfMag DESC NULLS FIRST, objectId "
        "LIMIT 5",
        ordered=True,
    ),
    case(
        "distinct-top-order-by-desc",
        "SELECT DISTINCT TOP 3 refBand, refExtendedness FROM demo.Object "
        "ORDER BY refExtendedness DESC, refBand",
        "SELECT DISTINCT refBand, refExtendedness FROM object "
        "ORDER BY refExtendedness DESC NULLS FIRST, refBand LIMIT 3",
        ordered=True,
    ),
]


@pytest.mark.parametrize(("adql", "sql", "ordered"), NULLS_FIRST_DESC)
def test_chunk_local_descending_order_puts_nulls_first(
    catalog: Catalog, adql: str, sql: str, ordered: bool
) -> None:
    check(catalog, adql, sql, ordered)


def test_distinct_aggregates_over_different_values(catalog: Catalog) -> None:
    check(
        catalog,
        "SELECT COUNT(DISTINCT s.band), COUNT(DISTINCT s.objectId), SUM(DISTINCT s.ccdVisitId) "
        "FROM demo.Source s",
        "SELECT count(DISTINCT s.band), count(DISTINCT s.objectId), sum(DISTINCT s.ccdVisitId) "
        "FROM source s",
        False,
    )


def test_gathered_descending_order_puts_nulls_first(catalog: Catalog) -> None:
    check(
        catalog,
        "SELECT TOP 5 o.objectId, o.u_psfMag FROM demo.Object o WHERE EXISTS "
        "(SELECT 1 FROM demo.Source s WHERE s.objectId = o.objectId) "
        "ORDER BY o.u_psfMag DESC, o.objectId",
        "SELECT o.objectId, o.u_psfMag FROM object o WHERE EXISTS "
        "(SELECT 1 FROM source s WHERE s.objectId = o.objectId) "
        "ORDER BY o.u_psfMag DESC NULLS FIRST, o.objectId LIMIT 5",
        True,
    )


# -- output names -----------------------------------------------------------------------------


def _names(catalog: Catalog, adql: str) -> list[str]:
    result = catalog.engine.execute(adql)
    table = result.read_all()
    names = [c.name for c in result.columns]
    assert table.column_names == names
    return names


@pytest.mark.parametrize(
    ("adql", "names"),
    [
        (
            'SELECT TOP 1 objectid, OBJECTID AS X, "objectId", coord_ra AS "Right Asc." '
            'FROM demo.Object ORDER BY "Right Asc.", X',
            ["objectId", "X", "objectId", "Right Asc."],
        ),
        (
            "SELECT TOP 1 objectId, s.psFlux FROM demo.Object o "
            "JOIN demo.Source s USING (OBJECTID)",
            ["objectId", "psFlux"],
        ),
        (
            "SELECT * FROM (SELECT band AS B, COUNT(*) AS N FROM demo.Source GROUP BY band) "
            "AS t ORDER BY b",
            ["B", "N"],
        ),
        (
            "WITH x AS (SELECT TOP 1 objectId AS Oid, coord_dec FROM demo.Object) "
            "SELECT x.*, Oid AS again FROM x",
            ["Oid", "coord_dec", "again"],
        ),
        (
            "SELECT TOP 1 CAST(objectId AS VARCHAR(3)), LOWER(refBand) FROM demo.Object",
            ["objectId", "_col_1"],
        ),
        (
            "SELECT TOP 1 sourceId FROM demo.Source UNION SELECT TOP 1 objectId FROM demo.Object",
            ["sourceId"],
        ),
    ],
)
def test_output_names_follow_adql_case_rules(catalog: Catalog, adql: str, names: list[str]) -> None:
    assert _names(catalog, adql) == names


def test_star_and_merged_join_keys_keep_the_catalog_spelling(catalog: Catalog) -> None:
    objects = [c.name for c in catalog.demo.object_spec.columns]
    sources = [c.name for c in catalog.demo.source_spec.columns]
    assert _names(catalog, "SELECT TOP 1 * FROM demo.Object") == objects
    assert _names(
        catalog,
        "SELECT TOP 1 o.*, s.band FROM demo.Object o JOIN demo.Source s ON s.objectId = o.objectId",
    ) == [
        *objects,
        "band",
    ]
    natural = "SELECT TOP 1 * FROM demo.Object NATURAL JOIN demo.Source"
    assert _names(catalog, natural) == objects + [n for n in sources if n != "objectId"]
    using = catalog.engine.execute(
        "SELECT objectId FROM demo.Object o JOIN demo.Source s USING (objectId) "
        "WHERE o.coord_dec > 89"
    )
    using.read_all()
    (key,) = using.columns
    assert key.name == "objectId" and key.column is not None and key.column.ucd == "meta.id;src"


# -- geometry against astropy and numpy --------------------------------------------------------

#: Positions closer than this (degrees) to a region's edge may fall either way in rounding.
EDGE = 1e-9


def _positions(catalog: Catalog) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = catalog.demo.objects
    return t["objectId"].to_numpy(), t["coord_ra"].to_numpy(), t["coord_dec"].to_numpy()


def _separation(ras: np.ndarray, decs: np.ndarray, ra: float, dec: float) -> np.ndarray:
    here = SkyCoord(ras * u.deg, decs * u.deg)
    return np.asarray(here.separation(SkyCoord(ra * u.deg, dec * u.deg)).deg)


def _ids(catalog: Catalog, adql: str) -> set[object]:
    return {r[0] for r in run(catalog, adql)}


def _assert_selects(
    catalog: Catalog, condition: str, inside: np.ndarray, unsure: np.ndarray
) -> None:
    """``condition`` selects exactly the objects ``inside`` (ignoring the ``unsure`` ones)."""
    ids, _, _ = _positions(catalog)
    got = _ids(catalog, f"SELECT o.objectId FROM demo.Object AS o WHERE {condition}")
    want = set(ids[inside & ~unsure].tolist())
    assert want, "the region should hold some objects"
    assert got - set(ids[unsure].tolist()) == want


def _box_corners(ra: float, dec: float, width: float, height: float) -> list[tuple[float, float]]:
    """Corners of an ADQL BOX from its definition (sides are great circles through the
    poles of the centre's east and north arms), in the order qcat lists them."""
    a, d = math.radians(ra), math.radians(dec)
    c = np.array([math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d)])
    east = np.array([-math.sin(a), math.cos(a), 0.0])
    north = np.array([-math.sin(d) * math.cos(a), -math.sin(d) * math.sin(a), math.cos(d)])
    tw, th = math.tan(math.radians(width) / 2), math.tan(math.radians(height) / 2)
    corners = []
    for sx, sy in ((1, 1), (-1, 1), (-1, -1), (1, -1)):
        p = c + sx * tw * east + sy * th * north
        p = p / np.linalg.norm(p)
        corners.append(
            (math.degrees(math.atan2(p[1], p[0])) % 360.0, math.degrees(math.asin(p[2])))
        )
    return corners


POLYGON = ((350.0, -20.0), (15.0, -25.0), (20.0, 10.0), (5.0, -5.0), (355.0, 15.0))
POLYGON_ADQL = "POLYGON(" + ", ".join(f"{a}, {b}" for a, b in POLYGON) + ")"


def test_contains_with_or_and_not(catalog: Catalog) -> None:
    _, ras, decs = _positions(catalog)
    near = _separation(ras, decs, 266.4, -28.9)
    far = _separation(ras, decs, 10.0, 10.0)
    polygon = Polygon(POLYGON)
    box = Box(200.0, 30.0, 40.0, 20.0)
    in_poly, in_box = inside_np(ras, decs, polygon), inside_np(ras, decs, box)
    unsure = (
        (np.abs(near - 15) < EDGE)
        | (np.abs(near - 8) < EDGE)
        | (np.abs(far - 30) < EDGE)
        | (boundary_distance_deg(ras, decs, polygon) < EDGE)
        | (boundary_distance_deg(ras, decs, box) < EDGE)
    )
    point = "POINT(o.coord_ra, o.coord_dec)"
    _assert_selects(
        catalog,
        f"(CONTAINS({point}, CIRCLE(266.4, -28.9, 15)) = 1 "
        f"AND NOT CONTAINS({point}, CIRCLE('ICRS', 266.4, -28.9, 8)) = 1) "
        f"OR 1 = CONTAINS({point}, {POLYGON_ADQL}) OR CONTAINS({point}, BOX(200, 30, 40, 20)) <> 0",
        ((near <= 15) & (near > 8)) | in_poly | in_box,
        unsure,
    )
    _assert_selects(
        catalog,
        f"CONTAINS({point}, CIRCLE(10, 10, 30)) = 0 AND NOT (CONTAINS({point}, "
        f"{POLYGON_ADQL}) = 1 OR INTERSECTS({point}, BOX(200, 30, 40, 20)) = 1)",
        (far > 30) & ~in_poly & ~in_box,
        unsure,
    )


def test_intersects_circles_and_points(catalog: Catalog) -> None:
    _, ras, decs = _positions(catalog)
    sep = _separation(ras, decs, 266.4, -28.9)
    radius = np.clip(np.abs(decs) / 20.0, 0.1, None)  # the column-built circle's radius
    point = "POINT(o.coord_ra, o.coord_dec)"
    _assert_selects(
        catalog,
        f"INTERSECTS(CIRCLE(266.4, -28.9, 6), {point}) = 1",
        sep <= 6,
        np.abs(sep - 6) < EDGE,
    )
    _assert_selects(
        catalog,
        "INTERSECTS(CIRCLE(o.coord_ra, o.coord_dec, 2), CIRCLE(266.4, -28.9, 5)) = 1",
        sep <= 7,
        np.abs(sep - 7) < EDGE,
    )
    _assert_selects(
        catalog,
        "INTERSECTS(CIRCLE(266.4, -28.9, 5), CIRCLE(POINT(o.coord_ra, o.coord_dec), "
        "CASE WHEN ABS(o.coord_dec) / 20 > 0.1 THEN ABS(o.coord_dec) / 20 ELSE 0.1 END)) = 1",
        sep <= 5 + radius,
        np.abs(sep - 5 - radius) < EDGE,
    )
    _assert_selects(
        catalog,
        "CONTAINS(CIRCLE(o.coord_ra, o.coord_dec, 1), CIRCLE(266.4, -28.9, 10)) = 1",
        sep + 1 <= 10,
        np.abs(sep - 9) < EDGE,
    )


@pytest.mark.parametrize(
    ("region", "shape"),
    [
        (POLYGON_ADQL, Polygon(POLYGON)),
        ("BOX(200, 30, 40, 20)", Polygon(tuple(_box_corners(200.0, 30.0, 40.0, 20.0)))),
    ],
    ids=["polygon", "box"],
)
@pytest.mark.parametrize("radius", [0.5, 7.0])
def test_intersects_column_circle_and_region(
    catalog: Catalog, region: str, shape: Polygon, radius: float
) -> None:
    _, ras, decs = _positions(catalog)
    edge = boundary_distance_deg(ras, decs, shape)
    inside = inside_np(ras, decs, shape)
    _assert_selects(
        catalog,
        f"INTERSECTS(CIRCLE(o.coord_ra, o.coord_dec, {radius}), {region}) = 1",
        inside | (edge <= radius),
        (np.abs(edge - radius) < EDGE) | (edge < EDGE),
    )


def _centroid(vertices: tuple[tuple[float, float], ...]) -> tuple[float, float]:
    """Direction of the mean position over a small spherical polygon (boundary integral:
    the integral of p over the region is half the sum of edge length times edge normal)."""
    ra = np.radians([v[0] for v in vertices])
    dec = np.radians([v[1] for v in vertices])
    p = np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=1)
    q = np.roll(p, -1, axis=0)
    normals = np.cross(p, q)
    normals /= np.linalg.norm(normals, axis=1)[:, None]
    lengths = np.arctan2(np.linalg.norm(np.cross(p, q), axis=1), (p * q).sum(axis=1))
    total = 0.5 * (lengths[:, None] * normals).sum(axis=0)
    if total @ p.mean(axis=0) < 0:  # vertices listed clockwise
        total = -total
    total /= np.linalg.norm(total)
    return math.degrees(math.atan2(total[1], total[0])) % 360.0, math.degrees(math.asin(total[2]))


def test_geometry_values(catalog: Catalog) -> None:
    triangle = ((0.0, 0.0), (10.0, 0.0), (0.0, 10.0))
    got = run(
        catalog,
        "SELECT o.objectId, AREA(CIRCLE(10, 20, 1)), AREA(POLYGON(0, 0, 10, 0, 0, 10)), "
        "AREA(BOX(0, 0, 10, 10)), AREA(CIRCLE(o.coord_ra, o.coord_dec, 2.5)), "
        "CENTROID(POLYGON(0, 0, 10, 0, 0, 10)), COORD1(CENTROID(BOX(10, 20, 2, 2))), "
        "COORD2(CENTROID(CIRCLE(o.coord_ra, o.coord_dec, 3))), COORDSYS(POINT(1, 2)), "
        "BOX(10, 20, 2, 1), POINT(o.coord_ra, o.coord_dec), CIRCLE(o.coord_ra, o.coord_dec, 1), "
        "COORD1(POINT(o.coord_ra, o.coord_dec)), COORD2(POINT(o.coord_ra + 1, o.coord_dec)), "
        "DISTANCE(POINT(o.coord_ra, o.coord_dec), POINT(10, 20)), "
        "DISTANCE(o.coord_ra, o.coord_dec, 0, 90), "
        "INTERSECTS(CIRCLE(0, 0, 1), CIRCLE(1.5, 0, 1)), "
        "INTERSECTS(CIRCLE(0, 0, 1), POLYGON(2, -1, 3, -1, 3, 1)), "
        "CONTAINS(CIRCLE(0, 0, 0.5), CIRCLE(0.2, 0, 1)), "
        "CONTAINS(CIRCLE(0, 0, 1), CIRCLE(0.2, 0, 1)), "
        "CONTAINS(POINT(0.5, 0.5), BOX(0, 0, 2, 2)), "
        "CONTAINS(POINT(o.coord_ra, o.coord_dec), CIRCLE(10, 20, 90)) "
        "FROM demo.Object AS o WHERE o.coord_dec > 80 ORDER BY o.objectId",
    )
    sq_deg = (180 / math.pi) ** 2

    def circle_area(r: float) -> float:
        return 2 * math.pi * (1 - math.cos(math.radians(r))) * sq_deg

    box_corners = _box_corners(10.0, 20.0, 2.0, 1.0)
    want = []
    for r in _object_rows(catalog, lambda r: r["coord_dec"] > 80):
        ra, dec = r["coord_ra"], r["coord_dec"]
        want.append(
            (
                r["objectId"],
                circle_area(1.0),
                polygon_area_sq_deg(Polygon(triangle)),
                polygon_area_sq_deg(Polygon(tuple(_box_corners(0.0, 0.0, 10.0, 10.0)))),
                circle_area(2.5),
                list(_centroid(triangle)),
                10.0,
                dec,
                "ICRS",
                [x for corner in box_corners for x in corner],
                [ra, dec],
                [ra, dec, 1.0],
                ra,
                dec,
                float(_separation(np.array([ra]), np.array([dec]), 10.0, 20.0)[0]),
                90.0 - dec,
                1,
                0,
                1,
                0,
                1,
                int(_separation(np.array([ra]), np.array([dec]), 10.0, 20.0)[0] <= 90),
            )
        )
    assert len(want) > 5
    assert_rows_close(got, want)


def test_distance_in_where_and_select(catalog: Catalog) -> None:
    ids, ras, decs = _positions(catalog)
    sep = _separation(ras, decs, 200.0, -40.0)
    got = run(
        catalog,
        "SELECT objectId, DISTANCE(POINT(coord_ra, coord_dec), POINT(200, -40)) AS d "
        "FROM demo.Object WHERE DISTANCE(coord_ra, coord_dec, 200, -40) < 20 "
        "ORDER BY d, objectId",
    )
    keep = (sep < 20) & (np.abs(sep - 20) > EDGE)
    order = np.lexsort((ids[keep], sep[keep]))
    want = list(zip(ids[keep][order].tolist(), sep[keep][order].tolist(), strict=True))
    assert len(want) > 20
    assert_rows_close([r for r in got if abs(cast(float, r[1]) - 20) > EDGE], want)


# -- qcat's extension functions ----------------------------------------------------------------


def test_extensions_match_astropy(catalog: Catalog) -> None:
    got = run(
        catalog,
        "SELECT objectId, ANGDIST(coord_ra, coord_dec, 10, -20), FLUX_TO_ABMAG(u_psfFlux), "
        "ABMAG_TO_FLUX(g_psfMag), ABMAG_TO_FLUX(FLUX_TO_ABMAG(r_psfFlux)) "
        "FROM demo.Object WHERE coord_dec > 60 ORDER BY objectId",
    )
    rows = _object_rows(catalog, lambda r: r["coord_dec"] > 60)
    ra = np.array([r["coord_ra"] for r in rows])
    dec = np.array([r["coord_dec"] for r in rows])
    sep = _separation(ra, dec, 10.0, -20.0)

    def abmag(flux: float | None) -> float | None:
        if flux is None or flux <= 0:
            return None  # as the catalog's own magnitudes: no magnitude for flux <= 0
        return float((flux * u.nJy).to(u.ABmag).value)

    def flux_of(mag: float | None) -> float | None:
        return None if mag is None else float((mag * u.ABmag).to(u.nJy).value)

    want = [
        (
            r["objectId"],
            float(s),
            abmag(r["u_psfFlux"]),
            flux_of(r["g_psfMag"]),
            flux_of(abmag(r["r_psfFlux"])),
        )
        for r, s in zip(rows, sep, strict=True)
    ]
    assert any(w[2] is None for w in want) and any(w[2] is not None for w in want)
    assert_rows_close(got, want)


def test_ivo_healpix_index_matches_cdshealpix(catalog: Catalog) -> None:
    got = run(
        catalog,
        "SELECT o.objectId, IVO_HEALPIX_INDEX(5, o.coord_ra, o.coord_dec), "
        "IVO_HEALPIX_INDEX(29, o.coord_ra, o.coord_dec), IVO_HEALPIX_INDEX(0, 10, 20) "
        "FROM demo.Object o WHERE o.coord_dec > 60 AND EXISTS "
        "(SELECT 1 FROM demo.Source s WHERE s.objectId = o.objectId) ORDER BY o.objectId",
    )
    rows = _object_rows(catalog, lambda r: r["coord_dec"] > 60)
    ra = np.array([r["coord_ra"] for r in rows]) * u.deg
    dec = np.array([r["coord_dec"] for r in rows]) * u.deg
    at5 = cdshealpix.nested.lonlat_to_healpix(ra, dec, 5)
    at29 = cdshealpix.nested.lonlat_to_healpix(ra, dec, 29)
    (corner,) = cdshealpix.nested.lonlat_to_healpix([10.0] * u.deg, [20.0] * u.deg, 0)
    want = [
        (r["objectId"], int(a), int(b), int(corner))
        for r, a, b in zip(rows, at5, at29, strict=True)
    ]
    assert_rows_close(got, want)
    with pytest.raises(UnsupportedQuery, match="main position"):
        run(catalog, "SELECT IVO_HEALPIX_INDEX(3, ra, dec) FROM demo.Source")


# -- what qcat refuses rather than answer wrongly ------------------------------------------------


@pytest.mark.parametrize(
    ("adql", "error", "match"),
    [
        (
            "SELECT COUNT(*) FROM demo.Object WHERE "
            "CONTAINS(POINT('GALACTIC', coord_ra, coord_dec), CIRCLE('GALACTIC', 0, 0, 10)) = 1",
            UnsupportedQuery,
            "coordinate system 'GALACTIC'",
        ),
        (
            "SELECT COUNT(DISTINCT objectId) FROM demo.Source s JOIN demo.Object o "
            "ON o.objectId = s.objectId",
            ResolveError,
            "'objectId' is ambiguous",
        ),
        (
            "SELECT COUNT(*) FROM demo.Source WHERE band LIKE 'g!%' ESCAPE '!!'",
            AdqlSyntaxError,
            "one character",
        ),
        ("SELECT TOP 1 CAST(coord_ra AS POINT) FROM demo.Object", UnsupportedQuery, "POINT"),
    ],
)
def test_refused_with_a_message(
    catalog: Catalog, adql: str, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        run(catalog, adql)


def test_icrs_and_geometry_casts_are_accepted(catalog: Catalog) -> None:
    check(
        catalog,
        "SELECT objectId, IN_UNIT(t.ra, 'arcmin') FROM (SELECT objectId, coord_ra AS ra "
        "FROM demo.Object WHERE CONTAINS(CAST(POINT('ICRS GEOCENTER', coord_ra, coord_dec) "
        "AS POINT), CIRCLE('ICRS', 266.4, -28.9, 4)) = 1) AS t",
        "SELECT objectId, coord_ra * 60 FROM object WHERE "
        + haversine("coord_ra", "coord_dec", "266.4", "-28.9")
        + " <= 4",
        False,
    )


# -- cancellation ------------------------------------------------------------------------------

#: Every source against every pair of visits: billions of distances, minutes of work.
ENDLESS_SCAN = (
    "SELECT COUNT(*) FROM demo.Source s, survey.Visit v, survey.Visit w "
    "WHERE ANGDIST(s.ra, s.dec, v.pointRa, w.pointDec) < 1"
)


def _running(clients: list[WorkerClient]) -> list[int]:
    return [int(c.health()["running_tasks"]) for c in clients]


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


class _Reader(threading.Thread):
    """Runs a query to its end (or its error) in the background."""

    def __init__(self, engine: QueryEngine, adql: str, query_id: str) -> None:
        super().__init__(daemon=True)
        self.engine, self.adql, self.query_id = engine, adql, query_id
        self.error: BaseException | None = None
        self.rows: list[dict[str, object]] | None = None

    def run(self) -> None:
        try:
            self.rows = (
                self.engine.execute(self.adql, query_id=self.query_id).read_all().to_pylist()
            )
        except BaseException as e:
            self.error = e


#: One task on one worker (only unpartitioned tables): read in the caller's thread.
ENDLESS_SINGLE_TASK = (
    "SELECT COUNT(*) FROM survey.Visit v, survey.Visit w, survey.Visit x, survey.Visit y "
    "WHERE ANGDIST(v.pointRa, w.pointDec, x.pointRa, y.pointDec) < 0.0001"
)


#: An IN subquery the engine runs first (qcat.czar.semijoin): the cancel must reach it.
ENDLESS_SUBQUERY = (
    "SELECT objectId FROM demo.Object WHERE objectId IN (SELECT s.objectId FROM demo.Source s, "
    "survey.Visit v, survey.Visit w WHERE ANGDIST(s.ra, s.dec, v.pointRa, w.pointDec) < 1)"
)


@pytest.mark.parametrize(
    "adql",
    [ENDLESS_SCAN, ENDLESS_SINGLE_TASK, ENDLESS_SUBQUERY],
    ids=["scan", "single-task", "in-subquery"],
)
def test_cancel_stops_a_long_scan_on_every_worker_within_a_second(
    catalog: Catalog, adql: str
) -> None:
    engine = QueryEngine(catalog.data, catalog.locations, timeout_s=60)
    clients = [WorkerClient(loc) for loc in catalog.locations]
    query_id = f"cancel-me-{len(adql)}"  # workers refuse a cancelled id from then on
    reader = _Reader(engine, adql, query_id)
    try:
        reader.start()
        assert _wait(lambda: sum(_running(clients)) > 0, 30), "the scan never started"
        time.sleep(0.3)
        assert reader.is_alive() and sum(_running(clients)) > 0, reader.error  # still scanning
        cancelled = time.monotonic()
        engine.cancel(query_id)
        assert _wait(lambda: sum(_running(clients)) == 0, 1.0), _running(clients)
        reader.join(1.0)
        assert not reader.is_alive(), "the reader still waits after the cancel"
        assert time.monotonic() - cancelled < 2.0
        assert reader.rows is None and isinstance(reader.error, QcatError)
        assert "cancelled" in str(reader.error), reader.error
    finally:
        engine.cancel(query_id)
        reader.join(30)
        for c in clients:
            c.close()
        engine.close()


#: Gathered (two partitioned references, not a director-child join): ``execute`` returns
#: once the workers have sent the rows; reading the result is the czar's DuckDB comparing
#: some 20 million pairs of sources.
LONG_MERGE = (
    "SELECT a.sourceId, b.sourceId FROM demo.Source a, demo.Source b "
    "WHERE ANGDIST(a.ra, a.dec, b.ra, b.dec) < 0.01 AND a.band = 'u' AND b.band = 'r'"
)


def test_cancel_stops_the_merge_of_a_gathered_query(catalog: Catalog) -> None:
    engine = QueryEngine(catalog.data, catalog.locations, timeout_s=60)
    result = engine.execute(LONG_MERGE, query_id="cancel-merge")
    outcome: dict[str, object] = {}

    def read() -> None:
        try:
            outcome["rows"] = result.read_all().num_rows
        except BaseException as e:
            outcome["error"] = e

    reader = threading.Thread(target=read, daemon=True)
    try:
        reader.start()
        time.sleep(0.3)
        assert reader.is_alive(), "the merge ended before it could be cancelled"
        engine.cancel("cancel-merge")
        reader.join(1.0)
        assert not reader.is_alive(), "the merge still runs after the cancel"
        error = outcome.get("error")
        assert "rows" not in outcome and isinstance(error, QcatError), outcome
        assert "cancel" in str(error).lower(), error
    finally:
        reader.join(60)  # today the merge cannot be stopped: let it finish
        engine.close()


# -- nearest rows first ----------------------------------------------------------------------


def _nearest(catalog: Catalog, ra: float, dec: float, top: int, offset: int, where: str):
    """The engine's and DuckDB's answers to the nearest rows of (ra, dec), and the plan note."""
    distance = f"DISTANCE(POINT('ICRS', coord_ra, coord_dec), POINT('ICRS', {ra}, {dec}))"
    condition = f"WHERE {where} " if where else ""
    adql = (
        f"SELECT TOP {top} objectId, {distance} AS d FROM demo.Object {condition}"
        f"ORDER BY d, objectId OFFSET {offset}"
    )
    raw_distance = haversine("coord_ra", "coord_dec", str(ra), str(dec))
    sql = (
        f"SELECT objectId, {raw_distance} AS d FROM object {condition}"
        f"ORDER BY d, objectId LIMIT {top} OFFSET {offset}"
    )
    result = catalog.engine.execute(adql)
    table = result.read_all()
    got = list(zip(*(c.to_pylist() for c in table.columns), strict=True))
    notes = [n for n in result.plan.notes if n.startswith("nearest rows first")]
    assert len(notes) == 1, result.plan.notes
    assert "nearest rows first" in catalog.engine.explain(adql).notes[0]
    return got, raw(catalog, sql), notes[0]


@pytest.mark.parametrize(
    ("where_point", "top", "offset", "where"),
    [
        ("ORDER BY objectId LIMIT 1 OFFSET 100", 1, 0, ""),
        ("ORDER BY objectId LIMIT 1 OFFSET 2000", 10, 3, "r_psfMag < 22"),
        ("ORDER BY coord_ra LIMIT 1", 7, 0, ""),  # by RA 0: the cone crosses it
        ("ORDER BY coord_dec DESC LIMIT 1", 5, 0, ""),  # by the pole
    ],
    ids=["one", "offset-and-filter", "ra-zero", "pole"],
)
def test_nearest_rows_first(
    catalog: Catalog, where_point: str, top: int, offset: int, where: str
) -> None:
    ((ra, dec),) = raw(catalog, f"SELECT coord_ra, coord_dec FROM object {where_point}")
    if where_point.startswith("ORDER BY coord_ra"):
        ra = 0.0
    if where_point.startswith("ORDER BY coord_dec"):
        dec = min(dec + 1.0, 90.0)
    got, want, note = _nearest(catalog, ra + 0.01, dec, top, offset, where)
    assert_rows_close(got, want, ordered=True)
    assert len(got) == top and "the query reads that cone only" in note, note


def test_nearest_rows_first_grows_the_cone_and_gives_up_when_it_must(
    catalog: Catalog,
) -> None:
    ((ra, dec),) = raw(catalog, "SELECT coord_ra, coord_dec FROM object LIMIT 1 OFFSET 500")
    # Rare rows: several cones are counted before one holds three of them.
    ((cut,),) = raw(catalog, "SELECT quantile_disc(r_psfMag, 0.1) FROM object")
    got, want, note = _nearest(catalog, ra, dec, 3, 0, f"r_psfMag < {cut}")
    assert_rows_close(got, want, ordered=True)
    assert "the query reads that cone only" in note, note
    assert int(note.split(" cone(s) counted")[0].rsplit("(", 1)[1]) > 1, note
    # No row passes at all: no cone can hold one, and the query runs as written.
    got, want, note = _nearest(catalog, ra, dec, 2, 0, "r_psfMag < -5")
    assert got == want == []
    assert note.endswith("the query runs as written"), note


@pytest.mark.parametrize(
    ("where", "order", "raw_where", "raw_order"),
    [
        ("", "DESC", "", "DESC"),  # the farthest rows
        (
            "WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(10.0, 10.0, 25)) = 1 ",
            "",
            "WHERE {} < 25 ".format(haversine("coord_ra", "coord_dec", "10.0", "10.0")),
            "",
        ),  # a cone already
    ],
    ids=["farthest", "in-a-cone"],
)
def test_nearest_rows_first_leaves_other_queries_alone(
    catalog: Catalog, where: str, order: str, raw_where: str, raw_order: str
) -> None:
    adql = (
        f"SELECT TOP 2 objectId FROM demo.Object {where}"
        f"ORDER BY DISTANCE(POINT(coord_ra, coord_dec), POINT(10.0, 10.0)) {order}"
    )
    raw_distance = haversine("coord_ra", "coord_dec", "10.0", "10.0")
    sql = f"SELECT objectId FROM object {raw_where}ORDER BY {raw_distance} {raw_order} LIMIT 2"
    assert run(catalog, adql) == raw(catalog, sql)
    notes = catalog.engine.explain(adql).notes
    assert not any("nearest" in n for n in notes), notes
