"""The geometry SQL, run by DuckDB, against the independent brute force.

``contains_sql`` must give exactly the booleans of
:func:`qcat.geometry.reference.inside_np` for every point farther than
``BOUNDARY_TOL_DEG`` from the region's boundary (closer points may fall
either way by rounding); the distance macro must match astropy.
"""

from __future__ import annotations

import math
import re

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from hypothesis import given, settings
from hypothesis import strategies as st

from partition.healpix import radec_to_healpix29
from qcat.geometry import (
    MACROS,
    SETUP_SQL,
    Box,
    Circle,
    GeometryError,
    Point,
    Polygon,
    circle_contains_sql,
    contains_sql,
    distance_sql,
    healpix_ranges_sql,
    region_ranges,
)
from qcat.geometry.reference import inside_np
from qcat.geometry.sql import literal
from tests.test_geometry import (
    BOUNDARY_TOL_DEG,
    boxes,
    c_shaped_band,
    circles,
    comb,
    decidable,
    offsets,
    polygon_around,
    polygons,
    probe_points,
    radec,
    regions,
)


@pytest.fixture(scope="module")
def con():
    connection = duckdb.connect()
    for statement in SETUP_SQL:
        connection.execute(statement)
    yield connection
    connection.close()


def run_contains(con, region, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """``contains_sql`` evaluated by DuckDB over a table of points, in row order."""
    points = pa.table({"i": np.arange(len(ra)), "ra": ra, "dec": dec})  # noqa: F841 (scanned)
    rows = con.execute(
        f"SELECT {contains_sql('ra', 'dec', region)} FROM points ORDER BY i"
    ).fetchall()
    return np.array([r[0] for r in rows], dtype=bool)


def check_sql_agrees(con, region, seed: int) -> None:
    ra, dec = probe_points(region, seed)
    ok = decidable(ra, dec, region)
    got = run_contains(con, region, ra, dec)
    want = inside_np(ra, dec, region)
    bad = np.flatnonzero(ok & (got != want))
    assert len(bad) == 0, (region, ra[bad[:5]], dec[bad[:5]], got[bad[:5]])
    assert want[ok].any() and not want[ok].all()


def test_macros_are_named_qcat_and_install_twice():
    names = [re.findall(r"MACRO\s+(\w+)", m)[0] for m in MACROS]
    assert names and all(n.startswith("qcat_") for n in names)
    assert SETUP_SQL == MACROS
    connection = duckdb.connect()
    for _ in range(2):  # CREATE OR REPLACE: a second run is harmless
        for statement in SETUP_SQL:
            connection.execute(statement)
    unit = connection.execute(
        "SELECT qcat_unit_x(90, 0), qcat_unit_y(90, 0), qcat_unit_z(90, 90)"
    ).fetchall()[0]
    assert unit == pytest.approx((0.0, 1.0, 1.0), abs=1e-15)


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_literals_read_back_exactly(con, x):
    assert con.execute(f"SELECT {literal(x)}, typeof({literal(x)})").fetchall()[0] == (x, "DOUBLE")


def test_literal_refuses_non_finite():
    with pytest.raises(GeometryError):
        literal(math.nan)


@settings(max_examples=25, deadline=None)
@given(circles(), st.integers(0, 1000))
def test_circle_sql_matches_reference(con, circle, seed):
    check_sql_agrees(con, circle, seed)


@settings(max_examples=25, deadline=None)
@given(boxes(), st.integers(0, 1000))
def test_box_sql_matches_reference(con, box, seed):
    check_sql_agrees(con, box, seed)


@settings(max_examples=25, deadline=None)
@given(polygons(convex=True), st.integers(0, 1000))
def test_convex_polygon_sql_matches_reference(con, polygon, seed):
    check_sql_agrees(con, polygon, seed)


@settings(max_examples=25, deadline=None)
@given(polygons(convex=False), st.integers(0, 1000))
def test_concave_polygon_sql_matches_reference(con, polygon, seed):
    check_sql_agrees(con, polygon, seed)


@pytest.mark.parametrize(
    "region",
    [
        c_shaped_band(),
        comb(),
        Polygon(((0.0, 80.0), (90.0, 80.0), (180.0, 80.0), (270.0, 80.0))),
        Polygon(((0.0, 90.0), (0.0, 0.0), (0.0, -90.0), (90.0, 0.0))),
        Box(0.0, -90.0, 3.0, 3.0),
        Circle(180.0, 45.0, 150.0),
        Circle(359.99, -89.0, 2.0),
        polygon_around(30.0, -40.0, 3.0, 200, 17, convex=False, reverse=True),
    ],
    ids=lambda r: type(r).__name__,
)
def test_awkward_regions_in_sql(con, region):
    check_sql_agrees(con, region, seed=11)


def test_contains_sql_boundary_and_errors(con):
    tri = Polygon(((10.0, 10.0), (20.0, 10.0), (15.0, 20.0)))
    ra = np.array([v[0] for v in tri.vertices] + [15.0, 15.0])
    dec = np.array([v[1] for v in tri.vertices] + [12.0, 9.0])
    assert run_contains(con, tri, ra, dec).tolist() == [True, True, True, True, False]
    whole_sky = Circle(0.0, 0.0, 180.0)
    assert run_contains(con, whole_sky, np.array([180.0, 0.0]), np.array([0.0, -90.0])).all()
    with pytest.raises(GeometryError):
        contains_sql("ra", "dec", Point(1.0, 2.0))  # type: ignore[arg-type]


def test_sql_reads_parquet_row_groups(con, tmp_path):
    # The same predicates over a Parquet file, as a worker runs them, with the ranges.
    rng = np.random.default_rng(3)
    ra = rng.uniform(0, 360, 50_000)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, 50_000)))
    h29 = radec_to_healpix29(ra, dec)
    order = np.argsort(h29)
    table = pa.table({"ra": ra[order], "dec": dec[order], "_healpix_29": h29[order]})
    import pyarrow.parquet as pq

    path = tmp_path / "points.parquet"
    pq.write_table(table, path, row_group_size=2_000)
    region = Box(200.0, -30.0, 20.0, 10.0)
    exact = contains_sql("ra", "dec", region)
    ranges = healpix_ranges_sql("_healpix_29", region_ranges(region))
    both = con.execute(
        f"SELECT count(*) FROM read_parquet('{path}') WHERE {ranges} AND {exact}"
    ).fetchall()[0][0]
    alone = con.execute(f"SELECT count(*) FROM read_parquet('{path}') WHERE {exact}").fetchall()[0][
        0
    ]
    assert both == alone == int(inside_np(ra, dec, region).sum()) > 0


# ---------------------------------------------------------------- distances


def astropy_distance(ra1, dec1, ra2, dec2) -> np.ndarray:
    a = SkyCoord(ra=ra1 * u.deg, dec=dec1 * u.deg)
    b = SkyCoord(ra=ra2 * u.deg, dec=dec2 * u.deg)
    return np.asarray(a.separation(b).deg)


def test_distance_sql_matches_astropy(con):
    rng = np.random.default_rng(8)
    n = 20_000
    ra1 = rng.uniform(0, 360, n)
    dec1 = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    dec1[:50] = rng.choice([90.0, -90.0], 50)  # poles
    ra1[50:100] = rng.choice([0.0, 359.9999999], 50)  # the RA seam
    # Separations from 1e-10 degrees to 180 (near-antipodal included).
    sep = 10.0 ** rng.uniform(-10, math.log10(180.0), n)
    sep[-200:] = 180.0 - 10.0 ** rng.uniform(-9, 0, 200)
    ra2, dec2 = radec(offsets(ra1, dec1, sep, rng.uniform(0, 2 * math.pi, n)))
    points = pa.table({"i": np.arange(n), "ra1": ra1, "dec1": dec1, "ra2": ra2, "dec2": dec2})  # noqa: F841
    rows = con.execute(
        f"SELECT {distance_sql('ra1', 'dec1', 'ra2', 'dec2')} FROM points ORDER BY i"
    ).fetchall()
    got = np.array([r[0] for r in rows])
    want = astropy_distance(ra1, dec1, ra2, dec2)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    tiny = want < 1e-6
    assert tiny.sum() > 1000
    assert np.abs(got[tiny] - want[tiny]).max() <= 1e-12
    # Symmetric, and zero for a point and itself.
    same = con.execute(
        f"SELECT {distance_sql('ra1', 'dec1', 'ra1', 'dec1')}, "
        f"{distance_sql('ra2', 'dec2', 'ra1', 'dec1')} FROM points ORDER BY i"
    ).fetchall()
    assert all(r[0] == 0.0 for r in same)
    np.testing.assert_allclose([r[1] for r in same], got, rtol=1e-12, atol=1e-13)


def test_distance_sql_known_values(con):
    got = con.execute(
        "SELECT qcat_distance(0, 90, 123, -90), qcat_distance(10, 20, 190, -20), "
        "qcat_distance(359.9999999, 0, 0.0000001, 0), qcat_distance(NULL, 0, 1, 1)"
    ).fetchall()[0]
    assert got[0] == pytest.approx(180.0, abs=1e-12)
    assert got[1] == pytest.approx(180.0, abs=1e-12)
    assert got[2] == pytest.approx(2e-7, rel=1e-6)
    assert got[3] is None


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_circle_contains_sql_with_columns(con, seed):
    # A neighbour-join shaped test: every row has its own centre and radius.
    rng = np.random.default_rng(seed)
    n = 4000
    cra = rng.uniform(0, 360, n)
    cdec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    radius = np.where(rng.random(n) < 0.8, 10.0 ** rng.uniform(-4, 1, n), rng.uniform(0, 180, n))
    # Half the points 1e-7 degrees either side of the circle, the rest well in or out.
    dist = np.where(
        rng.random(n) < 0.5,
        radius + rng.choice([-1e-7, 1e-7], n),
        radius * rng.choice([0.5, 2.0], n),
    )
    ra, dec = radec(offsets(cra, cdec, np.clip(dist, 0, 180), rng.uniform(0, 2 * math.pi, n)))
    pairs = pa.table(  # noqa: F841 (scanned by DuckDB)
        {"i": np.arange(n), "ra": ra, "dec": dec, "cra": cra, "cdec": cdec, "r": radius}
    )
    sql = circle_contains_sql("ra", "dec", "cra", "cdec", "r")
    rows = con.execute(f"SELECT {sql} FROM pairs ORDER BY i").fetchall()
    got = np.array([r[0] for r in rows], dtype=bool)
    sep = astropy_distance(ra, dec, cra, cdec)
    ok = np.abs(sep - radius) > BOUNDARY_TOL_DEG
    np.testing.assert_array_equal(got[ok], (sep <= radius)[ok])
    assert ok.mean() > 0.99


# ---------------------------------------------------------------- HEALPix ranges


def test_healpix_ranges_sql_text():
    ranges = np.array([[0, 4], [10, 11]], dtype=np.int64)
    assert (
        healpix_ranges_sql("t._healpix_29", ranges)
        == "(t._healpix_29 BETWEEN 0 AND 3 OR t._healpix_29 BETWEEN 10 AND 10)"
    )
    assert healpix_ranges_sql("h", np.empty((0, 2), dtype=np.int64)) == "FALSE"


@settings(max_examples=25, deadline=None)
@given(regions, st.sampled_from([1, 8, 64]), st.integers(0, 1000))
def test_ranges_sql_keeps_every_inside_point(con, region, max_ranges, seed):
    ra, dec = probe_points(region, seed)
    h29 = radec_to_healpix29(ra, dec)
    points = pa.table({"i": np.arange(len(ra)), "ra": ra, "dec": dec, "_healpix_29": h29})  # noqa: F841
    exact = contains_sql("ra", "dec", region)
    ranges = healpix_ranges_sql("_healpix_29", region_ranges(region, max_ranges))
    inside = {r[0] for r in con.execute(f"SELECT i FROM points WHERE {exact}").fetchall()}
    kept = {r[0] for r in con.execute(f"SELECT i FROM points WHERE {ranges}").fetchall()}
    assert inside <= kept
    assert inside
