"""The engine's fast paths, checked against the plain path and the brute-force oracle.

Fast paths (``docs/query-engine.md``, "Fast paths"): a query that needs one
chunk task runs whole on that task; a merge that only renames columns is
skipped and the workers' batches stream straight out; a worker's chunks are
bound into one task; neighbour joins pre-test pairs on the chord; a query
reading only unpartitioned tables runs whole on one worker. Each
question runs through the fast engine and through an engine with
``fast_paths=False`` (every query split and merged at the czar, one task per
chunk); both must give the oracle's rows, with the same column names and
types.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import duckdb
import healpy as hp
import numpy as np
import pyarrow as pa
import pytest

from qcat.czar.dispatch import QueryFailed
from qcat.czar.engine import WORKER_SETUP_MODULE, QueryEngine
from qcat.czar.errors import QueryError
from qcat.czar.plan import _UNIT_COLUMNS, CHORD_SLACK
from qcat.geometry import SETUP_SQL
from qcat.geometry.sql import literal
from qcat.tap_schema import refresh_tap_schema
from qcat.worker.pool import LocalWorkers
from tests.engine_support import Catalog, assert_rows_close, open_catalog, raw

Rows = list[tuple[object, ...]]

#: Rows of the unpartitioned table ``survey.Visit``.
VISITS = 400


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalog]:
    with open_catalog(tmp_path_factory.mktemp("fastpath"), visits=VISITS) as opened:
        yield opened


@pytest.fixture(scope="module")
def plain(catalog: Catalog) -> Iterator[QueryEngine]:
    engine = QueryEngine(catalog.data, catalog.locations, timeout_s=120, fast_paths=False)
    try:
        yield engine
    finally:
        engine.close()


def _one_chunk_cone(catalog: Catalog) -> tuple[float, float, float]:
    """A cone around the centre of the fullest Object chunk, well inside it."""
    chunk = max(catalog.engine.catalog().table("demo.Object").chunks, key=lambda c: c.num_rows)
    theta, phi = hp.pix2ang(1 << chunk.order, chunk.pixel, nest=True)
    radius = 0.3 * math.degrees(hp.max_pixrad(1 << chunk.order))
    return math.degrees(phi), 90.0 - math.degrees(theta), radius


def _table(engine: QueryEngine, adql: str) -> pa.Table:
    return engine.execute(adql).read_all()


def _rows(table: pa.Table) -> Rows:
    return list(zip(*(c.to_pylist() for c in table.columns), strict=True))


def _check(catalog: Catalog, plain: QueryEngine, adql: str, sql: str, ordered: bool) -> None:
    fast, slow = _table(catalog.engine, adql), _table(plain, adql)
    assert fast.schema.names == slow.schema.names
    assert fast.schema.types == slow.schema.types
    want = raw(catalog, sql)
    assert want, "the oracle must find rows, or the comparison proves little"
    assert_rows_close(_rows(fast), want, ordered=ordered)
    assert_rows_close(_rows(slow), want, ordered=ordered)


def test_one_chunk_queries_run_whole_on_their_task(catalog: Catalog, plain: QueryEngine) -> None:
    ra, dec, radius = _one_chunk_cone(catalog)
    cone = f"CONTAINS(POINT(coord_ra, coord_dec), CIRCLE({ra!r}, {dec!r}, {radius!r})) = 1"
    near = (
        f"(pow(sin(radians(coord_dec - {dec!r}) / 2), 2) + cos(radians(coord_dec)) * "
        f"cos(radians({dec!r})) * pow(sin(radians(coord_ra - {ra!r}) / 2), 2)) "
        f"<= pow(sin(radians({radius!r}) / 2), 2)"
    )
    cases = [
        (
            f"SELECT objectId, coord_ra, r_psfMag FROM demo.Object WHERE {cone}",
            f"SELECT objectId, coord_ra, r_psfMag FROM object WHERE {near}",
            False,
        ),
        (
            f"SELECT TOP 5 objectId, r_psfMag AS mag FROM demo.Object WHERE {cone} "
            "AND r_psfMag IS NOT NULL ORDER BY mag DESC, objectId OFFSET 2",
            f"SELECT objectId, r_psfMag FROM object WHERE {near} AND r_psfMag IS NOT NULL "
            "ORDER BY r_psfMag DESC, objectId LIMIT 5 OFFSET 2",
            True,
        ),
        (
            f"SELECT refExtendedness AS ext, COUNT(*) AS n, AVG(g_psfMag), STDDEV(g_psfMag) "
            f"FROM demo.Object WHERE {cone} GROUP BY refExtendedness HAVING COUNT(*) > 1 "
            "ORDER BY n DESC, ext",
            f"SELECT refExtendedness, count(*) AS n, avg(g_psfMag), stddev_samp(g_psfMag) "
            f"FROM object WHERE {near} GROUP BY refExtendedness HAVING count(*) > 1 "
            "ORDER BY n DESC, refExtendedness",
            True,
        ),
        (
            f"SELECT DISTINCT s.band FROM demo.Object o JOIN demo.Source s "
            f"ON s.objectId = o.objectId WHERE CONTAINS(POINT(o.coord_ra, o.coord_dec), "
            f"CIRCLE({ra!r}, {dec!r}, {radius!r})) = 1",
            f"SELECT DISTINCT s.band FROM object o JOIN source s ON s.objectId = o.objectId "
            f"WHERE {near.replace('coord_', 'o.coord_')}",
            False,
        ),
    ]
    for adql, sql, ordered in cases:
        query_plan = catalog.engine.explain(adql)
        (chunk_query,) = query_plan.chunk_queries
        assert len(chunk_query.tasks) == 1 and query_plan.merge_sql == "SELECT * FROM chunks"
        assert plain.explain(adql).merge_sql != query_plan.merge_sql
        _check(catalog, plain, adql, sql, ordered)


@pytest.mark.parametrize(
    ("adql", "sql", "ordered"),
    [
        (  # a plain projection over many chunks: the merge only renames
            "SELECT objectId, g_psfMag - r_psfMag AS gr FROM demo.Object WHERE g_psfMag < 22",
            "SELECT objectId, g_psfMag - r_psfMag FROM object WHERE g_psfMag < 22",
            False,
        ),
        (  # director-child join, chunks bound per worker, streamed through
            "SELECT o.objectId, s.sourceId, s.psFlux FROM demo.Object o JOIN demo.Source s "
            "ON s.objectId = o.objectId WHERE o.coord_dec > 20",
            "SELECT o.objectId, s.sourceId, s.psFlux FROM object o JOIN source s "
            "ON s.objectId = o.objectId WHERE o.coord_dec > 20",
            False,
        ),
        (  # aggregates: per-worker partials, merged at the czar
            "SELECT band, COUNT(*), AVG(psFlux), VAR_POP(psFlux), MIN(midPointTai) "
            "FROM demo.Source GROUP BY band ORDER BY band",
            "SELECT band, count(*), avg(psFlux), var_pop(psFlux), min(midPointTai) "
            "FROM source GROUP BY band ORDER BY band",
            True,
        ),
        (  # TOP with ORDER BY over bound chunks
            "SELECT TOP 12 objectId, r_psfMag FROM demo.Object WHERE r_psfMag IS NOT NULL "
            "ORDER BY r_psfMag, objectId",
            "SELECT objectId, r_psfMag FROM object WHERE r_psfMag IS NOT NULL "
            "ORDER BY r_psfMag, objectId LIMIT 12",
            True,
        ),
    ],
)
def test_many_chunk_queries(
    catalog: Catalog, plain: QueryEngine, adql: str, sql: str, ordered: bool
) -> None:
    query_plan = catalog.engine.explain(adql)
    assert len(query_plan.chunk_queries[0].tasks) > len(catalog.locations)
    _check(catalog, plain, adql, sql, ordered)


def test_a_worker_gets_one_task_per_query_when_the_sql_allows(catalog: Catalog) -> None:
    engine = catalog.engine
    chunk_query = engine.explain("SELECT COUNT(*) FROM demo.Source").chunk_queries[0]
    assignments = engine._assignments("q", chunk_query, 1e12)
    assert len(assignments) == len({a.worker for a in assignments}) <= len(catalog.locations)
    bound = sorted(f for a in assignments for f in a.task.relations["r0"])
    assert bound == sorted(f for t in chunk_query.tasks for f in t.relations["r0"])
    # A neighbour join reads margins: chunks bound together would repeat margin rows.
    pairs = engine.explain(
        "SELECT a.objectId FROM demo.Object a JOIN demo.Object b ON "
        "DISTANCE(POINT(a.coord_ra, a.coord_dec), POINT(b.coord_ra, b.coord_dec)) < 0.01"
    ).chunk_queries[0]
    assert not pairs.batchable
    assert len(engine._assignments("q", pairs, 1e12)) == len(pairs.tasks)


def test_nothing_to_read_still_has_the_output_columns(catalog: Catalog) -> None:
    adql = "SELECT objectId, coord_ra AS ra FROM demo.Object WHERE objectId = -5"
    assert not catalog.engine.explain(adql).chunk_queries[0].tasks
    table = catalog.engine.execute(adql).read_all()
    assert table.num_rows == 0 and table.schema.names == ["objectId", "ra"]
    assert table.schema.types == [pa.int64(), pa.float64()]


def test_a_dead_worker_fails_a_streamed_query(catalog: Catalog) -> None:
    with LocalWorkers(
        catalog.data, 2, memory_limit="256MB", setup_sql_module=WORKER_SETUP_MODULE
    ) as w:
        engine = QueryEngine(catalog.data, w.locations, timeout_s=60)
        try:
            # Many tasks per worker (a neighbour join is never bound together), so
            # some are still to run on each worker when one of them dies.
            adql = (
                "SELECT a.objectId, b.objectId FROM demo.Object a JOIN demo.Object b ON "
                "DISTANCE(POINT(a.coord_ra, a.coord_dec), POINT(b.coord_ra, b.coord_dec)) "
                "< 0.015"
            )
            assert engine.explain(adql).passthrough
            result = engine.execute(adql)
            w.workers[0].proc.kill()
            w.workers[0].proc.wait()
            with pytest.raises(QueryFailed, match=r"no result returned: worker grpc://"):
                result.read_all()
            # Once dead before the query starts: the first stream never comes.
            with pytest.raises(QueryFailed, match=r"no result returned: worker grpc://"):
                engine.execute("SELECT objectId FROM demo.Object").read_all()
        finally:
            engine.close()


_VISIT_NEAR = (
    "(pow(sin(radians(pointDec - 10) / 2), 2) + cos(radians(pointDec)) * cos(radians(10)) * "
    "pow(sin(radians(pointRa - 40) / 2), 2)) <= pow(sin(radians(30) / 2), 2)"
)


@pytest.mark.parametrize(
    ("adql", "sql", "ordered"),
    [
        (  # a projection with a filter and an expression
            "SELECT visitId, exposure * 2 AS twice FROM survey.Visit WHERE band IN ('g', 'r')",
            "SELECT visitId, exposure * 2 FROM visit WHERE band IN ('g', 'r')",
            False,
        ),
        (  # TOP, ORDER BY with NULLs (they sort as the largest values), OFFSET
            "SELECT TOP 7 visitId, exposure FROM survey.Visit ORDER BY exposure DESC, visitId "
            "OFFSET 3",
            "SELECT visitId, exposure FROM visit ORDER BY exposure DESC NULLS FIRST, visitId "
            "LIMIT 7 OFFSET 3",
            True,
        ),
        (  # aggregates, HAVING, ORDER BY on an aggregate
            "SELECT band, COUNT(*) AS n, AVG(exposure), STDDEV(exposure), COUNT(DISTINCT "
            "FLOOR(exposure)), SUM(DISTINCT visitId) FROM survey.Visit GROUP BY band "
            "HAVING COUNT(*) > 10 ORDER BY n DESC, band",
            "SELECT band, count(*) AS n, avg(exposure), stddev_samp(exposure), count(DISTINCT "
            "floor(exposure)), sum(DISTINCT visitId) FROM visit GROUP BY band "
            "HAVING count(*) > 10 ORDER BY n DESC, band",
            True,
        ),
        (  # a join of two unpartitioned tables (here one table twice)
            "SELECT a.band, COUNT(*) FROM survey.Visit a JOIN survey.Visit b "
            "ON a.band = b.band AND a.visitId < b.visitId WHERE a.exposure > b.exposure "
            "GROUP BY a.band",
            "SELECT a.band, count(*) FROM visit a JOIN visit b "
            "ON a.band = b.band AND a.visitId < b.visitId WHERE a.exposure > b.exposure "
            "GROUP BY a.band",
            False,
        ),
        (  # subqueries, WITH and a set operation
            "WITH long AS (SELECT visitId, band FROM survey.Visit WHERE exposure > 50) "
            "SELECT visitId FROM long WHERE band = 'i' UNION SELECT visitId FROM survey.Visit "
            "WHERE exposure < (SELECT AVG(exposure) FROM survey.Visit) - 12",
            "WITH long AS (SELECT visitId, band FROM visit WHERE exposure > 50) "
            "SELECT visitId FROM long WHERE band = 'i' UNION SELECT visitId FROM visit "
            "WHERE exposure < (SELECT avg(exposure) FROM visit) - 12",
            False,
        ),
        (  # geometry, translated for the worker's DuckDB
            "SELECT DISTINCT band FROM survey.Visit "
            "WHERE CONTAINS(POINT(pointRa, pointDec), CIRCLE(40, 10, 30)) = 1",
            f"SELECT DISTINCT band FROM visit WHERE {_VISIT_NEAR}",
            False,
        ),
    ],
)
def test_queries_on_unpartitioned_tables_run_whole_on_one_worker(
    catalog: Catalog, plain: QueryEngine, adql: str, sql: str, ordered: bool
) -> None:
    query_plan = catalog.engine.explain(adql)
    assert query_plan.shape == "unpartitioned" and query_plan.passthrough
    (chunk_query,) = query_plan.chunk_queries
    assert len(chunk_query.tasks) == 1 and query_plan.merge_sql == "SELECT * FROM chunks"
    assert plain.explain(adql).shape == "gather"
    _check(catalog, plain, adql, sql, ordered)


def test_tap_schema_queries_run_whole_on_one_worker(catalog: Catalog, plain: QueryEngine) -> None:
    refresh_tap_schema(catalog.data)
    adql = (
        "SELECT t.table_name, COUNT(*) AS n FROM TAP_SCHEMA.tables t "
        "JOIN TAP_SCHEMA.columns c ON c.table_name = t.table_name "
        "GROUP BY t.table_name ORDER BY t.table_name"
    )
    assert catalog.engine.explain(adql).shape == "unpartitioned"
    fast, slow = _table(catalog.engine, adql), _table(plain, adql)
    assert fast.equals(slow)
    counts = dict(zip(*(c.to_pylist() for c in fast.columns), strict=True))
    for name in ("demo.Object", "demo.Source", "survey.Visit"):
        spec = catalog.engine.catalog().table(name).spec
        assert counts[name] == len(spec.columns)


def test_unpartitioned_queries_are_spread_over_the_workers(catalog: Catalog) -> None:
    engine = catalog.engine
    (chunk_query,) = engine.explain("SELECT visitId FROM survey.Visit").chunk_queries
    workers = set()
    for n in range(32):
        (assignment,) = engine._assignments(f"q{n}", chunk_query, 1e12)
        assert assignment.worker == engine.dispatcher.worker_for_query(f"q{n}")
        assert assignment.task.relations == chunk_query.tasks[0].relations
        workers.add(assignment.worker)
    assert workers == set(range(len(catalog.locations)))


def test_a_dead_worker_fails_an_unpartitioned_query(catalog: Catalog) -> None:
    with LocalWorkers(
        catalog.data, 2, memory_limit="256MB", setup_sql_module=WORKER_SETUP_MODULE
    ) as w:
        engine = QueryEngine(catalog.data, w.locations, timeout_s=60)
        try:
            on_first = [
                q
                for q in (f"q{n}" for n in range(64))
                if engine.dispatcher.worker_for_query(q) == 0
            ]
            # Tens of millions of rows, far more than the queues and the network hold.
            adql = (
                "SELECT a.visitId, b.visitId, c.visitId FROM survey.Visit a "
                "CROSS JOIN survey.Visit b CROSS JOIN survey.Visit c"
            )
            result = engine.execute(adql, query_id=on_first[0])
            assert result.plan.shape == "unpartitioned"
            result.reader.read_next_batch()
            w.workers[0].proc.kill()
            w.workers[0].proc.wait()
            with pytest.raises(QueryFailed, match=r"no result returned: worker grpc://"):
                result.read_all()
            # Dead before the query starts: its one stream never comes.
            with pytest.raises(QueryFailed, match=r"no result returned: worker grpc://"):
                engine.execute("SELECT visitId FROM survey.Visit", query_id=on_first[1]).read_all()
        finally:
            engine.close()


def test_the_chord_pretest_keeps_every_pair_the_exact_test_keeps() -> None:
    """Pairs straddling the match radius: the chord test passes all that DISTANCE keeps."""
    rng = np.random.default_rng(3)
    n = 20_000
    radius = 5.0 / 3600.0
    ra1 = rng.uniform(0.0, 360.0, n)
    dec1 = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    dec1[:200] = rng.choice([89.9999, -89.9999, 0.0], 200)
    # Second points at distances within 1e-7 (relative) of the radius, in any direction.
    distance = np.radians(radius * (1.0 + rng.uniform(-1e-7, 1e-7, n)))
    bearing = rng.uniform(0.0, 2 * np.pi, n)
    d1 = np.radians(dec1)
    dec2 = np.arcsin(
        np.sin(d1) * np.cos(distance) + np.cos(d1) * np.sin(distance) * np.cos(bearing)
    )
    ra2 = np.radians(ra1) + np.arctan2(
        np.sin(bearing) * np.sin(distance) * np.cos(d1),
        np.cos(distance) - np.sin(d1) * np.sin(dec2),
    )
    pairs = pa.table(
        {
            "ra1": ra1,
            "dec1": dec1,
            "ra2": np.degrees(ra2) % 360.0,
            "dec2": np.degrees(dec2),
        }
    )
    con = duckdb.connect()
    for statement in SETUP_SQL:
        con.execute(statement)
    con.register("pairs", pairs)
    relative, absolute = CHORD_SLACK
    chord = 2.0 * math.sin(math.radians(radius) / 2.0) * (1.0 + relative) + absolute
    squares = " + ".join(
        f"pow(qcat_unit_{k}(ra1, dec1) - qcat_unit_{k}(ra2, dec2), 2)" for k in _UNIT_COLUMNS
    )
    exact = f"qcat_distance(ra1, dec1, ra2, dec2) <= {literal(radius)}"
    kept, missed = con.sql(
        f"SELECT count(*) FILTER ({exact}), "
        f"count(*) FILTER ({exact} AND NOT ({squares} <= {literal(chord * chord)})) FROM pairs"
    ).fetchall()[0]
    assert kept > n // 10 and missed == 0


@pytest.mark.parametrize(
    "adql",
    [
        "SELECT CAST(band AS INTEGER) FROM survey.Visit",
        "SELECT CAST('x' || CAST(objectId AS VARCHAR(20)) AS BIGINT) FROM demo.Object",
        "SELECT objectId FROM demo.Object WHERE objectId = 'abc'",
    ],
)
def test_a_value_the_query_cannot_convert_is_the_query_s_fault(catalog: Catalog, adql: str) -> None:
    # A CAST failing on the data is the user's error (TAP: 400), not a worker failure,
    # and its message says what failed without the worker, the task or the task's SQL.
    engine = QueryEngine(catalog.data, catalog.locations, timeout_s=60)
    try:
        with pytest.raises(QueryError, match=r"Conversion Error") as failed:
            engine.execute(adql).read_all()
    finally:
        engine.close()
    message = str(failed.value)
    for internal in ("grpc://", "worker", "task", "LINE", " r0", "c0"):
        assert internal not in message, message
    # Operators still find where it happened in the chained error.
    assert "grpc://" in str(failed.value.__cause__)
