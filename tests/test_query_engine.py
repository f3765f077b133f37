"""Queries through the czar and real workers, checked against brute force on the raw data.

The catalog is split into many small chunks (threshold 300 rows), so regions
cross many chunk boundaries. Every answer is compared with an independent
computation over the unpartitioned input: DuckDB over the original Parquet
for relational questions, numpy/astropy for the geometry.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord, search_around_sky
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qcat.czar.adql import AdqlSyntaxError
from qcat.czar.dispatch import QueryFailed
from qcat.czar.engine import WORKER_SETUP_MODULE, QueryEngine
from qcat.czar.errors import QueryError, ResolveError
from qcat.geometry import Box, Circle, Polygon
from qcat.worker.pool import LocalWorkers
from tests.conftest import ingest_demo_table, make_demo
from tests.engine_support import Catalog, assert_rows_close, open_catalog, raw, run
from tests.formats import write_as
from tests.test_geometry import boxes, decidable, polygons


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalog]:
    with open_catalog(tmp_path_factory.mktemp("engine")) as opened:
        yield opened


# -- relational questions ---------------------------------------------------------------


def test_count_and_filters(catalog: Catalog) -> None:
    assert run(catalog, "SELECT COUNT(*) FROM demo.Object") == [(4000,)]
    got = run(
        catalog, "SELECT COUNT(*) FROM demo.Object WHERE g_psfMag < 22 AND refExtendedness = 1"
    )
    assert got == raw(
        catalog, "SELECT count(*) FROM object WHERE g_psfMag < 22 AND refExtendedness = 1"
    )


def test_top_order_offset(catalog: Catalog) -> None:
    got = run(
        catalog,
        "SELECT TOP 7 objectId, r_psfMag FROM demo.Object WHERE r_psfMag IS NOT NULL "
        "ORDER BY r_psfMag DESC, objectId OFFSET 3",
    )
    want = raw(
        catalog,
        "SELECT objectId, r_psfMag FROM object WHERE r_psfMag IS NOT NULL "
        "ORDER BY r_psfMag DESC, objectId LIMIT 7 OFFSET 3",
    )
    assert got == want


def test_order_by_expression_not_selected(catalog: Catalog) -> None:
    got = run(
        catalog,
        "SELECT TOP 5 objectId FROM demo.Object ORDER BY ABS(coord_dec - 10), objectId",
    )
    want = raw(
        catalog, "SELECT objectId FROM object ORDER BY abs(coord_dec - 10), objectId LIMIT 5"
    )
    assert got == want


def test_group_by_aggregates(catalog: Catalog) -> None:
    got = run(
        catalog,
        "SELECT band, COUNT(*), SUM(psFlux), AVG(psFlux), MIN(psFlux), MAX(psFlux), "
        "STDDEV(psFlux), STDDEV_POP(psFlux), VAR_SAMP(psFlux), VARIANCE(psFlux), "
        "COUNT(DISTINCT objectId) FROM demo.Source GROUP BY band ORDER BY band",
    )
    want = raw(
        catalog,
        "SELECT band, count(*), sum(psFlux), avg(psFlux), min(psFlux), max(psFlux), "
        "stddev_samp(psFlux), stddev_pop(psFlux), var_samp(psFlux), var_samp(psFlux), "
        "count(DISTINCT objectId) FROM source GROUP BY band ORDER BY band",
    )
    assert_rows_close(got, want)


def test_group_by_expression_having_and_top(catalog: Catalog) -> None:
    got = run(
        catalog,
        "SELECT TOP 4 FLOOR(g_psfMag) AS bin, COUNT(*) AS n, AVG(r_psfMag - i_psfMag) AS colour "
        "FROM demo.Object WHERE g_psfMag IS NOT NULL GROUP BY FLOOR(g_psfMag) "
        "HAVING COUNT(*) > 20 ORDER BY n DESC, bin",
    )
    want = raw(
        catalog,
        "SELECT floor(g_psfMag) AS bin, count(*) AS n, avg(r_psfMag - i_psfMag) FROM object "
        "WHERE g_psfMag IS NOT NULL GROUP BY floor(g_psfMag) HAVING count(*) > 20 "
        "ORDER BY n DESC, bin LIMIT 4",
    )
    assert_rows_close(got, want)


def test_aggregates_over_nothing(catalog: Catalog) -> None:
    got = run(
        catalog, "SELECT COUNT(*), SUM(psFlux), AVG(psFlux) FROM demo.Source WHERE psFlux > 1e30"
    )
    assert got == [(0, None, None)]


def test_distinct(catalog: Catalog) -> None:
    got = sorted(run(catalog, "SELECT DISTINCT band FROM demo.Source"))
    assert got == sorted(raw(catalog, "SELECT DISTINCT band FROM source"))


def test_output_columns_carry_felis_metadata(catalog: Catalog) -> None:
    result = catalog.engine.execute("SELECT TOP 1 coord_ra AS ra, objectId FROM demo.Object")
    result.read_all()
    ra, key = result.columns
    assert (ra.name, key.name) == ("ra", "objectId")
    assert ra.column is not None and ra.column.unit == "deg"
    assert key.column is not None and key.column.ucd == "meta.id;src"


# -- director and child ---------------------------------------------------------------------


def test_light_curve_uses_the_director_index(catalog: Catalog) -> None:
    key = catalog.demo.objects["objectId"][1234].as_py()
    adql = (
        "SELECT s.sourceId, s.midPointTai, s.psFlux FROM demo.Object AS o "
        f"JOIN demo.Source AS s ON o.objectId = s.objectId WHERE o.objectId = {key} "
        "ORDER BY s.midPointTai"
    )
    plan = catalog.engine.explain(adql)
    assert len(plan.chunk_queries[0].tasks) == 1
    want = raw(
        catalog,
        f"SELECT sourceId, midPointTai, psFlux FROM source WHERE objectId = {key} "
        "ORDER BY midPointTai",
    )
    assert want and run(catalog, adql) == want


def test_director_child_join_aggregate(catalog: Catalog) -> None:
    got = run(
        catalog,
        "SELECT o.objectId, COUNT(*) AS n, MAX(s.psFlux) FROM demo.Object o "
        "JOIN demo.Source s ON s.objectId = o.objectId WHERE o.coord_dec > 30 "
        "GROUP BY o.objectId ORDER BY o.objectId",
    )
    want = raw(
        catalog,
        "SELECT o.objectId, count(*), max(s.psFlux) FROM object o JOIN source s "
        "ON s.objectId = o.objectId WHERE o.coord_dec > 30 GROUP BY o.objectId ORDER BY 1",
    )
    assert len(want) > 50
    assert_rows_close(got, want)


# -- geometry against astropy ------------------------------------------------------------------


def _coords(catalog: Catalog) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = catalog.demo.objects
    return (
        t["objectId"].to_numpy(),
        t["coord_ra"].to_numpy(),
        t["coord_dec"].to_numpy(),
    )


def _cone_ids(catalog: Catalog, ra: float, dec: float, radius: float) -> set[int]:
    ids, ras, decs = _coords(catalog)
    sep = SkyCoord(ras * u.deg, decs * u.deg).separation(SkyCoord(ra * u.deg, dec * u.deg))
    return set(ids[sep.deg <= radius].tolist())


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    ra=st.floats(0, 360, exclude_max=True),
    dec=st.one_of(st.floats(-90, 90), st.sampled_from([89.9, -89.95, 0.0])),
    radius=st.floats(0.05, 25),
    form=st.sampled_from(["contains", "distance"]),
)
def test_random_cones_match_astropy(
    catalog: Catalog, ra: float, dec: float, radius: float, form: str
) -> None:
    ids, ras, decs = _coords(catalog)
    sep = SkyCoord(ras * u.deg, decs * u.deg).separation(SkyCoord(ra * u.deg, dec * u.deg)).deg
    # Rows within 1e-9 deg of the edge may fall either way in floating point.
    assume_clear = np.abs(sep - radius) > 1e-9
    want = set(ids[(sep <= radius) & assume_clear].tolist())
    unsure = set(ids[~assume_clear].tolist())
    condition = (
        f"CONTAINS(POINT(coord_ra, coord_dec), CIRCLE({ra!r}, {dec!r}, {radius!r})) = 1"
        if form == "contains"
        else f"DISTANCE(POINT(coord_ra, coord_dec), POINT({ra!r}, {dec!r})) <= {radius!r}"
    )
    got = {r[0] for r in run(catalog, f"SELECT objectId FROM demo.Object WHERE {condition}")}
    assert got - unsure == want


def _region_adql(region: Box | Polygon) -> str:
    if isinstance(region, Box):
        return f"BOX({region.ra!r}, {region.dec!r}, {region.width!r}, {region.height!r})"
    return "POLYGON(" + ", ".join(f"{a!r}, {b!r}" for a, b in region.vertices) + ")"


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(region=st.one_of(boxes(), polygons()))
def test_random_boxes_and_polygons_match_the_reference(
    catalog: Catalog, region: Box | Polygon
) -> None:
    """Boxes and polygons anywhere (poles, RA 0/360, many chunk and margin edges crossed)."""
    from qcat.geometry.reference import inside_np

    ids, ras, decs = _coords(catalog)
    # Rows within the reference's boundary tolerance may fall either way.
    clear = decidable(ras, decs, region)
    want = set(ids[inside_np(ras, decs, region) & clear].tolist())
    unsure = set(ids[~clear].tolist())
    adql = (
        "SELECT objectId FROM demo.Object WHERE "
        f"CONTAINS(POINT(coord_ra, coord_dec), {_region_adql(region)}) = 1"
    )
    got = {r[0] for r in run(catalog, adql)}
    assert got - unsure == want


def test_polygon_across_ra_zero(catalog: Catalog) -> None:
    from qcat.geometry.reference import inside_np

    vertices = ((350.0, -20.0), (15.0, -25.0), (20.0, 10.0), (355.0, 15.0))
    ids, ras, decs = _coords(catalog)
    want = set(ids[inside_np(ras, decs, Polygon(vertices))].tolist())
    coords = ", ".join(f"{a}, {b}" for a, b in vertices)
    got = {
        r[0]
        for r in run(
            catalog,
            f"SELECT objectId FROM demo.Object WHERE "
            f"CONTAINS(POINT(coord_ra, coord_dec), POLYGON({coords})) = 1",
        )
    }
    assert want and got == want


def test_neighbour_pairs_match_astropy(catalog: Catalog) -> None:
    radius = 50 / 3600.0  # degrees, within the 60 arcsec margin
    ids, ras, decs = _coords(catalog)
    coords = SkyCoord(ras * u.deg, decs * u.deg)
    i, j, _, _ = search_around_sky(coords, coords, radius * u.deg)
    want = {(int(ids[a]), int(ids[b])) for a, b in zip(i, j, strict=True) if a != b}
    got = set(
        run(
            catalog,
            "SELECT a.objectId, b.objectId FROM demo.Object a JOIN demo.Object b "
            "ON DISTANCE(POINT(a.coord_ra, a.coord_dec), POINT(b.coord_ra, b.coord_dec)) "
            f"< {radius!r} "
            "WHERE a.objectId <> b.objectId",
        )
    )
    assert want and got == want


def test_radius_beyond_the_margin_is_refused(catalog: Catalog) -> None:
    with pytest.raises(QueryError, match="margin"):
        catalog.engine.execute(
            "SELECT a.objectId FROM demo.Object a JOIN demo.Object b "
            "ON DISTANCE(POINT(a.coord_ra, a.coord_dec), POINT(b.coord_ra, b.coord_dec)) < 0.5"
        )


@pytest.mark.parametrize(
    "condition",
    [
        "INTERSECTS(POINT(coord_ra, coord_dec), CIRCLE({ra}, {dec}, {r})) = 1",
        "1 = INTERSECTS(CIRCLE({ra}, {dec}, {r}), POINT(coord_ra, coord_dec))",
        "CONTAINS(POINT({ra}, {dec}), CIRCLE(coord_ra, coord_dec, {r})) = 1",
        "1 = INTERSECTS(CIRCLE(coord_ra, coord_dec, {r}), POINT({ra}, {dec}))",
        # a circle around each row meeting a constant one: within the sum of the radii
        "1 = INTERSECTS(CIRCLE(coord_ra, coord_dec, {r} - 0.5), CIRCLE({ra}, {dec}, 0.5))",
        "INTERSECTS(CIRCLE({ra}, {dec}, 1.25), CIRCLE(coord_ra, coord_dec, {r} - 1.25)) = 1",
    ],
)
def test_other_ways_of_writing_a_cone_prune_alike(catalog: Catalog, condition: str) -> None:
    ra, dec, r = 200.0, -30.0, 3.0
    select = "SELECT objectId FROM demo.Object WHERE "
    adql = select + condition.format(ra=ra, dec=dec, r=r)
    plain = select + f"CONTAINS(POINT(coord_ra, coord_dec), CIRCLE({ra}, {dec}, {r})) = 1"
    notes = catalog.engine.explain(adql).notes
    assert any("region selects" in n for n in notes)
    assert notes == catalog.engine.explain(plain).notes
    assert {row[0] for row in run(catalog, adql)} == _cone_ids(catalog, ra, dec, r)


def test_radii_written_as_arithmetic_plan_like_numbers(catalog: Catalog) -> None:
    """``5./3600.`` (as TOPCAT writes a match radius) prunes and matches like ``0.00138...``."""
    ra, dec = 40.0, 10.0
    cone = "SELECT objectId FROM demo.Object WHERE CONTAINS(POINT(coord_ra, coord_dec), {}) = 1"
    folded = catalog.engine.explain(cone.format(f"CIRCLE({ra}, {dec}, 3600 / 3600. * 2)"))
    plain = catalog.engine.explain(cone.format(f"CIRCLE({ra}, {dec}, 2.0)"))
    assert folded.notes == plain.notes
    assert any("region selects" in n for n in folded.notes)
    got = run(catalog, cone.format(f"CIRCLE({ra}, {dec}, (1 + 1) * 3600 / 3600.)"))
    assert {r[0] for r in got} == _cone_ids(catalog, ra, dec, 2.0)
    pairs = (
        "SELECT a.objectId, b.objectId FROM demo.Object a JOIN demo.Object b "
        "ON DISTANCE(POINT(a.coord_ra, a.coord_dec), POINT(b.coord_ra, b.coord_dec)) < {} "
        "WHERE a.objectId <> b.objectId"
    )
    assert catalog.engine.explain(pairs.format("50/3600.")).notes[0].endswith("(neighbours)")
    with pytest.raises(QueryError, match="margin"):
        catalog.engine.execute(pairs.format("1800 / 3600."))


# -- IN subqueries answered first ----------------------------------------------------------


def _executed(catalog: Catalog, adql: str) -> tuple[list[tuple[object, ...]], tuple[str, ...]]:
    """The rows of ``adql`` and the notes of the plan that ran (after any rewriting)."""
    result = catalog.engine.execute(adql)
    table = result.read_all()
    rows = list(zip(*(c.to_pylist() for c in table.columns), strict=True))
    return rows, result.plan.notes


CONE_SOURCES = (
    "SELECT s.sourceId, s.objectId, s.psFlux FROM {source} s WHERE s.objectId IN "
    "(SELECT objectId FROM {object} WHERE {cone}) ORDER BY s.sourceId"
)


def test_light_curves_of_a_cone_by_an_in_subquery(catalog: Catalog) -> None:
    ra, dec, r = 150.0, 20.0, 4.0
    ids = _cone_ids(catalog, ra, dec, r)
    cone = f"CONTAINS(POINT(coord_ra, coord_dec), CIRCLE({ra}, {dec}, {r})) = 1"
    got, notes = _executed(
        catalog, CONE_SOURCES.format(source="demo.Source", object="demo.Object", cone=cone)
    )
    listed = ", ".join(map(str, sorted(ids)))
    want = raw(
        catalog,
        "SELECT sourceId, objectId, psFlux FROM source "
        f"WHERE objectId IN ({listed}) ORDER BY sourceId",
    )
    assert ids and want and got == want
    assert notes[0] == f"IN subquery 1 answered first: {len(ids)} value(s) written in"
    explained = catalog.engine.explain(
        CONE_SOURCES.format(source="demo.Source", object="demo.Object", cone=cone)
    )
    assert explained.notes[0].startswith("1 subquery(ies) run first when the query runs")
    assert any(n.startswith("demo.Source: director index maps") for n in notes)


def test_a_subquery_answered_first_counts_against_the_query_s_deadline(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The query's timeout bounds the whole of it, not each part run on its own."""
    deadlines: list[float] = []
    real = QueryEngine._execute_plan

    def spy(self, resolved, query_plan, query_id, deadline):  # type: ignore[no-untyped-def]
        deadlines.append(deadline)
        return real(self, resolved, query_plan, query_id, deadline)

    monkeypatch.setattr(QueryEngine, "_execute_plan", spy)
    cone = "CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(150.0, 20.0, 4.0)) = 1"
    started = time.time()
    _, notes = _executed(
        catalog, CONE_SOURCES.format(source="demo.Source", object="demo.Object", cone=cone)
    )
    assert notes[0].startswith("IN subquery 1 answered first")
    assert len(deadlines) == 2 and deadlines[0] == deadlines[1]
    assert started < deadlines[0] <= time.time() + catalog.engine.timeout_s


def test_in_subqueries_that_stay(catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    """Empty, correlated, negated and too large subqueries: each answered exactly."""
    cases = {
        "empty": "s.objectId IN (SELECT objectId FROM {object} WHERE objectId < 0)",
        "correlated": "s.objectId IN (SELECT objectId FROM {object} o "
        "WHERE o.objectId = s.objectId AND o.r_psfMag < s.psFlux)",
        "negated": "s.objectId NOT IN (SELECT objectId FROM {object} WHERE r_psfMag > 20)",
        "large": "s.objectId IN (SELECT objectId FROM {object} WHERE r_psfMag < 23)",
    }
    monkeypatch.setattr("qcat.czar.semijoin.MAX_INLINED_VALUES", 5)
    for label, condition in cases.items():
        query = "SELECT COUNT(*), SUM(s.sourceId) FROM {source} s WHERE " + condition
        got, notes = _executed(catalog, query.format(source="demo.Source", object="demo.Object"))
        assert got == raw(catalog, query.format(source="source", object="object")), label
        answered = [n for n in notes if n.startswith("IN subquery 1")]
        if label == "empty":
            assert answered == ["IN subquery 1 answered first: 0 value(s) written in"]
        elif label == "large":
            assert answered and "kept in the query" in answered[0]
        else:
            assert not answered, label


def test_scalar_subqueries_answered_first(catalog: Catalog) -> None:
    brightest = (
        "SELECT objectId, r_psfMag FROM {object} WHERE r_psfMag = "
        "(SELECT MIN(r_psfMag) FROM {object})"
    )
    got, notes = _executed(catalog, brightest.format(object="demo.Object"))
    assert len(got) == 1 and got == raw(catalog, brightest.format(object="object"))
    assert notes[0].startswith("scalar subquery 1 answered first: ")
    assert "shape: chunk-local (single)" in notes
    # Subquery on the left, beside a cone: the cone still prunes.
    cone = "CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(150.0, 20.0, 4.0)) = 1"
    fainter = (
        "SELECT objectId FROM {object} WHERE (SELECT AVG(r_psfMag) FROM {object}) < r_psfMag "
        f"AND {cone} ORDER BY objectId"
    )
    got, notes = _executed(catalog, fainter.format(object="demo.Object"))
    ids = _cone_ids(catalog, 150.0, 20.0, 4.0)
    (mean,) = raw(catalog, "SELECT AVG(r_psfMag) FROM object")[0]
    want = raw(catalog, f"SELECT objectId, r_psfMag FROM object WHERE r_psfMag > {mean!r}")
    assert got and got == sorted((i,) for i, _ in want if i in ids)
    assert any("region selects" in n for n in notes)
    # No value (NULL): the comparison keeps no row.
    none = "SELECT COUNT(*) FROM demo.Object WHERE r_psfMag > (SELECT MAX(r_psfMag) FROM " + (
        "demo.Object WHERE objectId < 0)"
    )
    got, notes = _executed(catalog, none)
    assert got == [(0,)] and notes[0].endswith("NULL, the term keeps no row")
    # Several rows: kept as written, and DuckDB refuses it as it would anyway.
    several = "SELECT objectId FROM demo.Object WHERE objectId = (SELECT objectId FROM demo.Object)"
    with pytest.raises(QueryError, match="More than one row"):
        catalog.engine.execute(several).read_all()


# -- gathered shapes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("adql", "sql"),
    [
        (
            "SELECT COUNT(*) FROM demo.Object o WHERE o.objectId IN "
            "(SELECT objectId FROM demo.Source WHERE psFlux > 20000)",
            "SELECT count(*) FROM object o WHERE o.objectId IN "
            "(SELECT objectId FROM source WHERE psFlux > 20000)",
        ),
        (
            "SELECT COUNT(*) FROM demo.Object o WHERE EXISTS "
            "(SELECT 1 FROM demo.Source s WHERE s.objectId = o.objectId AND s.band = 'u')",
            "SELECT count(*) FROM object o WHERE EXISTS "
            "(SELECT 1 FROM source s WHERE s.objectId = o.objectId AND s.band = 'u')",
        ),
        (
            "SELECT TOP 5 objectId, (SELECT COUNT(*) FROM demo.Source s "
            "WHERE s.objectId = o.objectId) AS n FROM demo.Object o ORDER BY objectId",
            "SELECT objectId, (SELECT count(*) FROM source s WHERE s.objectId = o.objectId) "
            "FROM object o ORDER BY objectId LIMIT 5",
        ),
        (
            "WITH bright AS (SELECT objectId FROM demo.Object WHERE g_psfMag < 21) "
            "SELECT COUNT(*) FROM bright",
            "WITH bright AS (SELECT objectId FROM object WHERE g_psfMag < 21) "
            "SELECT count(*) FROM bright",
        ),
        (
            "SELECT band FROM demo.Source WHERE psFlux > 40000 UNION "
            "SELECT band FROM demo.Source WHERE psFlux < 100 ORDER BY band",
            "SELECT band FROM source WHERE psFlux > 40000 UNION "
            "SELECT band FROM source WHERE psFlux < 100 ORDER BY band",
        ),
        (
            "SELECT COUNT(*), COUNT(s.sourceId) FROM demo.Object o LEFT OUTER JOIN "
            "demo.Source s ON s.objectId = o.objectId AND s.psFlux > 50000",
            "SELECT count(*), count(s.sourceId) FROM object o LEFT JOIN source s "
            "ON s.objectId = o.objectId AND s.psFlux > 50000",
        ),
    ],
)
def test_gathered_queries(catalog: Catalog, adql: str, sql: str) -> None:
    assert run(catalog, adql) == raw(catalog, sql)


# -- errors ----------------------------------------------------------------------


def test_unknown_names_suggest_close_ones(catalog: Catalog) -> None:
    with pytest.raises(ResolveError, match="g_psfMag"):
        catalog.engine.execute("SELECT g_psfMg FROM demo.Object")
    with pytest.raises(ResolveError, match=r"demo\.Object"):
        catalog.engine.execute("SELECT * FROM demo.Objet")
    # A qualified name: the table it was looked for in, close names there, who has it.
    join = "SELECT {} FROM demo.Object o JOIN demo.Source s ON o.objectId = s.objectId"
    with pytest.raises(ResolveError) as e:
        catalog.engine.execute(join.format("s.coord_ra"))
    assert "no column 'coord_ra' in table demo.Source (s)" in str(e.value)
    assert str(e.value).endswith("; demo.Object has it")
    with pytest.raises(ResolveError, match=r"in table demo\.Source \(s\).*did you mean psFlux"):
        catalog.engine.execute(join.format("s.psFlx"))
    with pytest.raises(ResolveError, match="no column 'g_psfMg' "):  # as written, not folded
        catalog.engine.execute("SELECT g_psfMg FROM demo.Object")


def test_functions_outside_the_allow_list_never_reach_duckdb(catalog: Catalog) -> None:
    for adql in (
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT read_text('/etc/passwd') FROM demo.Object",
        "SELECT current_setting('memory_limit') FROM demo.Object",
    ):
        with pytest.raises(AdqlSyntaxError):
            catalog.engine.execute(adql)


def test_a_worker_dying_mid_query_is_an_error(tmp_path: Path, catalog: Catalog) -> None:
    with LocalWorkers(
        catalog.data, 2, memory_limit="256MB", setup_sql_module=WORKER_SETUP_MODULE
    ) as w:
        engine = QueryEngine(catalog.data, w.locations, timeout_s=60)
        try:
            result = engine.execute(
                "SELECT a.objectId, b.objectId FROM demo.Object a JOIN demo.Source b "
                "ON a.objectId = b.objectId"
            )
            w.workers[0].proc.kill()
            with pytest.raises(QueryFailed, match=r"no result returned: worker grpc://"):
                result.read_all()
        finally:
            engine.close()


# -- command line ---------------------------------------------------------------------------


def test_qcat_query_writes_files_and_reports_errors(catalog: Catalog, tmp_path: Path) -> None:
    from astropy.table import Table

    adql = "SELECT objectId, coord_ra FROM demo.Object WHERE coord_dec > 60 ORDER BY objectId"
    want = raw(catalog, "SELECT objectId, coord_ra FROM object WHERE coord_dec > 60 ORDER BY 1")
    for suffix in ("parquet", "fits"):
        out = tmp_path / f"north.{suffix}"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "qcat",
                "query",
                "--data",
                str(catalog.data),
                adql,
                "-o",
                str(out),
            ],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        table = Table.read(out)
        assert (
            list(zip(table["objectId"].tolist(), table["coord_ra"].tolist(), strict=True)) == want
        )
        if suffix == "fits":
            assert str(table["coord_ra"].unit) == "deg"
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "qcat",
            "query",
            "--data",
            str(catalog.data),
            "SELECT coord_ra FROM demo.Object "
            "WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(1, 2)) = 1",
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "radius" in bad.stderr and "Traceback" not in bad.stderr


def test_qcat_adql_explain_shows_chunks_and_sql(catalog: Catalog) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "qcat",
            "adql",
            "explain",
            "--data",
            str(catalog.data),
            "SELECT COUNT(*) FROM demo.Object WHERE "
            "CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(10, 20, 2)) = 1",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "shape: chunk-local" in proc.stdout
    assert "_healpix_29 BETWEEN" in proc.stdout and "merge:" in proc.stdout


def _source_coords(catalog: Catalog) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = catalog.demo.sources
    return t["sourceId"].to_numpy(), t["ra"].to_numpy(), t["dec"].to_numpy()


@pytest.mark.parametrize(
    ("region", "form"),
    [
        ("CIRCLE(126.2, -35.3, 3.0)", "contains"),
        ("CIRCLE(359.5, 0.5, 6.0)", "distance"),
        ("POLYGON(240.0, -55.0, 246.0, -55.0, 246.0, -49.0, 240.0, -49.0)", "contains"),
    ],
)
def test_a_child_region_reads_only_chunks_holding_its_positions(
    catalog: Catalog, region: str, form: str
) -> None:
    """Sources sit in their object's chunk; their own positions prune by the chunks' bounds."""
    from qcat.geometry.reference import inside_np

    parsed: Circle | Polygon
    if region.startswith("CIRCLE"):
        ra, dec, radius = (float(v) for v in region[7:-1].split(","))
        parsed = Circle(ra, dec, radius)
    else:
        values = [float(v) for v in region[8:-1].split(",")]
        parsed = Polygon(tuple(zip(values[::2], values[1::2], strict=True)))
    condition = (
        f"CONTAINS(POINT(ra, dec), {region}) = 1"
        if form == "contains"
        else f"DISTANCE(POINT(ra, dec), POINT({parsed.ra!r}, {parsed.dec!r})) <= {parsed.radius!r}"
    )
    adql = f"SELECT sourceId FROM demo.Source WHERE {condition}"
    tasks = catalog.engine.explain(adql).chunk_queries[0].tasks
    total = len(catalog.engine.catalog().table("demo.Source").chunks)
    assert 0 < len(tasks) < total / 2
    ids, ras, decs = _source_coords(catalog)
    if isinstance(parsed, Circle):
        sep = SkyCoord(ras * u.deg, decs * u.deg).separation(
            SkyCoord(parsed.ra * u.deg, parsed.dec * u.deg)
        )
        want = set(ids[sep.deg <= parsed.radius].tolist())
    else:
        want = set(ids[inside_np(ras, decs, parsed)].tolist())
    assert want and {r[0] for r in run(catalog, adql)} == want


@pytest.mark.parametrize("circle", [(126.2, -35.3, 3.0), (266.4, -28.9, 0.5), (359.8, 1.0, 2.0)])
def test_a_child_cone_keeps_the_chunks_whose_position_box_it_reaches(
    catalog: Catalog, circle: tuple[float, float, float]
) -> None:
    """Each Source chunk's rows lie in the RA/Dec box of its statistics: the cone keeps a
    chunk when it comes within its radius of that box (astropy over the box's edges)."""
    ra, dec, radius = circle
    adql = f"SELECT sourceId FROM demo.Source WHERE CONTAINS(POINT(ra, dec), CIRCLE{circle}) = 1"
    kept = {t.key for t in catalog.engine.explain(adql).chunk_queries[0].tasks}
    centre = SkyCoord(ra * u.deg, dec * u.deg)
    edge = np.linspace(0.0, 1.0, 2001)
    for chunk in catalog.engine.catalog().table("demo.Source").chunks:
        assert chunk.position_bounds is not None
        ra_min, ra_max, dec_min, dec_max = chunk.position_bounds
        ras, decs = ra_min + edge * (ra_max - ra_min), dec_min + edge * (dec_max - dec_min)
        sample = SkyCoord(
            np.r_[ras, ras, np.full_like(decs, ra_min), np.full_like(decs, ra_max)] * u.deg,
            np.r_[np.full_like(ras, dec_min), np.full_like(ras, dec_max), decs, decs] * u.deg,
        )
        inside = dec_min <= dec <= dec_max and ra_min <= ra <= ra_max
        nearest = 0.0 if inside else float(sample.separation(centre).deg.min())
        slack = max(ra_max - ra_min, dec_max - dec_min) / 2000
        if nearest <= radius:
            assert (chunk.order, chunk.pixel) in kept
        elif nearest > radius + slack:
            assert (chunk.order, chunk.pixel) not in kept
    # Within a chunk, the circle's declinations and RA (across RA 0: both ends of the sky)
    sql = catalog.engine.explain(adql).chunk_queries[0].sql
    assert "source.dec BETWEEN" in sql
    assert ("source.ra >= " in sql and " OR source.ra <= " in sql) == (ra + radius > 360)
    assert ("source.ra BETWEEN" in sql) == (ra + radius < 360)
    ids, ras_, decs_ = _source_coords(catalog)
    sep = SkyCoord(ras_ * u.deg, decs_ * u.deg).separation(centre)
    want = set(ids[sep.deg <= radius].tolist())
    assert want and {r[0] for r in run(catalog, adql)} == want


def test_a_child_region_prunes_a_director_child_join(catalog: Catalog) -> None:
    adql = (
        "SELECT o.objectId, s.sourceId FROM demo.Object AS o JOIN demo.Source AS s "
        "ON o.objectId = s.objectId "
        "WHERE CONTAINS(POINT(s.ra, s.dec), CIRCLE(126.2, -35.3, 3.0)) = 1 AND s.psFlux > 0"
    )
    query_plan = catalog.engine.explain(adql)
    assert any("position bounds keep" in n for n in query_plan.notes)
    total = len(catalog.engine.catalog().table("demo.Object").chunks)
    assert 0 < len(query_plan.chunk_queries[0].tasks) < total / 2
    want = raw(
        catalog,
        "SELECT o.objectId, s.sourceId FROM object o JOIN source s ON o.objectId = s.objectId "
        "WHERE s.psFlux > 0 AND degrees(2 * asin(sqrt(pow(sin(radians(s.dec + 35.3) / 2), 2) + "
        "cos(radians(s.dec)) * cos(radians(-35.3)) * pow(sin(radians(s.ra - 126.2) / 2), 2)))) "
        "<= 3.0 ORDER BY 1, 2",
    )
    assert want and sorted(run(catalog, adql)) == want


def test_child_key_lookup_reads_one_chunk(catalog: Catalog) -> None:
    key = catalog.demo.objects["objectId"][77].as_py()
    adql = f"SELECT sourceId, psFlux FROM demo.Source WHERE objectId = {key} ORDER BY sourceId"
    assert len(catalog.engine.explain(adql).chunk_queries[0].tasks) == 1
    want = raw(catalog, f"SELECT sourceId, psFlux FROM source WHERE objectId = {key} ORDER BY 1")
    assert want and run(catalog, adql) == want


def test_a_new_version_is_seen_by_the_next_query(tmp_path: Path) -> None:
    demo = make_demo(600, seed=5)
    first = write_as(demo.objects.slice(0, 400), tmp_path / "a.parquet", "parquet")
    second = write_as(demo.objects.slice(400), tmp_path / "b.parquet", "parquet")
    data = tmp_path / "data"

    def ingest(path: Path) -> None:
        ingest_demo_table(data, demo, "demo.Object", path, 1_000_000)

    ingest(first)
    with LocalWorkers(data, 1, memory_limit="256MB", setup_sql_module=WORKER_SETUP_MODULE) as w:
        engine = QueryEngine(data, w.locations)
        try:
            count = "SELECT COUNT(*) FROM demo.Object"
            assert engine.execute(count).read_all().column(0).to_pylist() == [400]
            ingest(second)
            assert engine.execute(count).read_all().column(0).to_pylist() == [600]
        finally:
            engine.close()


WARM_UP = """
import json, sys
from pathlib import Path
from qcat.czar import plan
from qcat.czar.engine import QueryEngine
engine = QueryEngine(Path(sys.argv[1]), ["grpc://127.0.0.1:9"])  # nothing runs: no worker
warmed = engine.warm_up()
print(json.dumps({"warmed": warmed, "indexes": plan._open_index.cache_info().currsize}))
"""


def test_warm_up_plans_each_director_table_in_a_fresh_process(catalog: Catalog) -> None:
    """A service warms up before it serves: the director index's footer is read, and the
    one-time imports a first query would pay for are done, without running anything."""
    done = subprocess.run(
        [sys.executable, "-c", WARM_UP, str(catalog.data)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip() == '{"warmed": ["demo.Object"], "indexes": 1}', done.stderr
