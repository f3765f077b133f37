"""Query benchmark: the czar + workers against plain DuckDB on one unpartitioned file.

Run after ``bench.ingest`` has built a catalog (default: the 10M-object one):

    uv run python -m bench.query --data bench/out/qcat-data --inputs bench/out/input-10000000

It starts N local workers and one ``QueryEngine`` (what ``qcat query`` and the
TAP service run), then, for each question of the issue, times ``--repeat``
runs and reports the median. Full-table questions are also answered by DuckDB
alone over a single Parquet file per table made from the same inputs, in the
same process and alternating with qcat, and the ratio of the medians is
printed. Figures are recorded by hand in ``bench/RESULTS.md``.

The 20-client tests are run twice: through the engine, and as a floor, the
very SQL the engine's plan gives each worker run by DuckDB alone in this
process (one locked-down database as a worker opens, views already bound, no
planning, Flight or Python around it), with the same clients and questions.
On two cores that floor shows how much of the budget DuckDB's own scans take.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from qcat.czar.engine import WORKER_SETUP_MODULE, QueryEngine
from qcat.worker.cli import load_setup_sql
from qcat.worker.files import tables_root
from qcat.worker.lockdown import bind_relations, open_locked_database
from qcat.worker.pool import LocalWorkers
from qcat.worker.settings import duckdb_threads

CONE_CENTRE = (266.4, -28.9)  # in the dense bulge of the demo sky

LOW_VOLUME = {
    "id lookup": "SELECT * FROM demo.Object WHERE objectId = {key}",
    "cone 1 arcmin": (
        "SELECT * FROM demo.Object WHERE CONTAINS(POINT(coord_ra, coord_dec), "
        "CIRCLE({ra}, {dec}, 0.016666667)) = 1"
    ),
    "cone 0.1 deg": (
        "SELECT * FROM demo.Object WHERE CONTAINS(POINT(coord_ra, coord_dec), "
        "CIRCLE({ra}, {dec}, 0.1)) = 1"
    ),
    "light curve": (
        "SELECT midPointTai, band, psFlux, psFluxErr FROM demo.Source WHERE objectId = {key} "
        "ORDER BY midPointTai"
    ),
}

MEDIUM = {
    "cone 1 deg, all columns": (
        "SELECT * FROM demo.Object WHERE CONTAINS(POINT(coord_ra, coord_dec), "
        "CIRCLE({ra}, {dec}, 1.0)) = 1"
    ),
    "polygon 1.5 sq deg": (
        "SELECT objectId, coord_ra, coord_dec, r_psfMag FROM demo.Object WHERE "
        "CONTAINS(POINT(coord_ra, coord_dec), POLYGON({ra0}, {dec0}, {ra1}, {dec0}, "
        "{ra1}, {dec1}, {ra0}, {dec1})) = 1"
    ),
    "neighbours within 5 arcsec in a 1 deg cone": (
        "SELECT a.objectId, b.objectId FROM demo.Object a JOIN demo.Object b "
        "ON DISTANCE(POINT(a.coord_ra, a.coord_dec), POINT(b.coord_ra, b.coord_dec)) < 0.0013889 "
        "WHERE CONTAINS(POINT(a.coord_ra, a.coord_dec), CIRCLE({ra}, {dec}, 1.0)) = 1 "
        "AND a.objectId <> b.objectId"
    ),
}

#: Questions users write with a subquery or an outer join, which the engine rewrites
#: (docs/query-engine.md, "Subqueries answered first", outer director-child joins).
#: Lookups by a child table's own key (its own index, docs/ingest.md).
# Questions about a child table by its own columns: rows sit in their director's chunk.
CHILD_OWN = {
    "a source by its own id (child key index)": (
        "SELECT * FROM demo.Source WHERE sourceId = {source_key}"
    ),
    "detections in a 0.1 deg cone (Source's own position)": (
        "SELECT * FROM demo.Source WHERE CONTAINS(POINT(ra, dec), CIRCLE({ra}, {dec}, 0.1)) = 1"
    ),
}
REWRITTEN = {
    "light curves of a cone's objects (IN subquery)": (
        "SELECT s.* FROM demo.Source s WHERE s.objectId IN (SELECT objectId FROM demo.Object "
        "WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE({ra}, {dec}, 0.01)) = 1)"
    ),
    "brightest object (scalar subquery)": (
        "SELECT objectId, r_psfMag FROM demo.Object WHERE r_psfMag = "
        "(SELECT MIN(r_psfMag) FROM demo.Object)"
    ),
    "an object and its sources (LEFT JOIN by key)": (
        "SELECT o.objectId, s.midPointTai FROM demo.Object o LEFT JOIN demo.Source s "
        "ON o.objectId = s.objectId WHERE o.objectId = {key}"
    ),
    "max flux of a cone's objects (correlated)": (
        "SELECT o.objectId, (SELECT MAX(s.psFlux) FROM demo.Source s "
        "WHERE s.objectId = o.objectId) AS m FROM demo.Object o "
        "WHERE CONTAINS(POINT(o.coord_ra, o.coord_dec), CIRCLE({ra}, {dec}, 0.02)) = 1"
    ),
    "sources of a cone written as a CTE": (
        "WITH c AS (SELECT objectId FROM demo.Object "
        "WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE({ra}, {dec}, 0.05)) = 1) "
        "SELECT COUNT(*) FROM demo.Source s JOIN c ON s.objectId = c.objectId"
    ),
    "detections per cone object (grouped CTE)": (
        "WITH lc AS (SELECT objectId, COUNT(*) AS n FROM demo.Source GROUP BY objectId) "
        "SELECT o.objectId, lc.n FROM demo.Object o JOIN lc ON lc.objectId = o.objectId "
        "WHERE CONTAINS(POINT(o.coord_ra, o.coord_dec), CIRCLE({ra}, {dec}, 0.02)) = 1"
    ),
    "nearest 5 objects, no cone (ORDER BY DISTANCE)": (
        "SELECT TOP 5 objectId, DISTANCE(POINT(coord_ra, coord_dec), POINT({ra}, {dec})) AS d "
        "FROM demo.Object ORDER BY d"
    ),
    "objects with many detections (GROUP BY key)": (
        "SELECT objectId, COUNT(*) AS n FROM demo.Source GROUP BY objectId HAVING COUNT(*) > 25"
    ),
}

# (ADQL, the same question for DuckDB over the single files)
FULL_TABLE = {
    "count with a filter": (
        "SELECT COUNT(*) FROM demo.Object WHERE g_psfMag < 22",
        "SELECT count(*) FROM object WHERE g_psfMag < 22",
    ),
    "group by with averages": (
        "SELECT refExtendedness, AVG(g_psfMag), AVG(r_psfMag), COUNT(*) FROM demo.Object "
        "GROUP BY refExtendedness",
        "SELECT refExtendedness, avg(g_psfMag), avg(r_psfMag), count(*) FROM object "
        "GROUP BY refExtendedness",
    ),
    "histogram": (
        "SELECT FLOOR(r_psfMag) AS bin, COUNT(*) FROM demo.Object WHERE r_psfMag IS NOT NULL "
        "GROUP BY FLOOR(r_psfMag)",
        "SELECT floor(r_psfMag) AS bin, count(*) FROM object WHERE r_psfMag IS NOT NULL "
        "GROUP BY floor(r_psfMag)",
    ),
    "top 100 order by": (
        "SELECT TOP 100 objectId, r_psfMag FROM demo.Object WHERE r_psfMag IS NOT NULL "
        "ORDER BY r_psfMag",
        "SELECT objectId, r_psfMag FROM object WHERE r_psfMag IS NOT NULL "
        "ORDER BY r_psfMag LIMIT 100",
    ),
    "colour-cut scan": (
        "SELECT objectId, g_psfMag - r_psfMag AS gr FROM demo.Object "
        "WHERE g_psfMag - r_psfMag > 1.2 AND r_psfMag - i_psfMag < 0.3",
        "SELECT objectId, g_psfMag - r_psfMag AS gr FROM object "
        "WHERE g_psfMag - r_psfMag > 1.2 AND r_psfMag - i_psfMag < 0.3",
    ),
    "source group by": (
        "SELECT band, COUNT(*), AVG(psFlux) FROM demo.Source GROUP BY band",
        "SELECT band, count(*), avg(psFlux) FROM source GROUP BY band",
    ),
}


def _time(run: object) -> float:
    t0 = time.perf_counter()
    run()  # type: ignore[operator]
    return time.perf_counter() - t0


def _qcat(engine: QueryEngine, adql: str) -> int:
    return engine.execute(adql).read_all().num_rows


def _client_question(
    question: Callable[[int, int], str],
    values: dict[str, float | int],
    keys: list[int],
    i: int,
    n: int,
) -> str:
    """Client ``i``'s ``n``-th question, about its own object (``keys[i]``) or a cone
    centre shifted 0.05 deg per client."""
    mine = {**values, "key": keys[i], "ra": float(values["ra"]) + 0.05 * i}
    return question(i, n).format(**mine)


def _concurrent(
    ask: Callable[[int, str], object],
    question: Callable[[int, int], str],
    values: dict[str, float | int],
    keys: list[int],
) -> list[float]:
    """Latencies of 20 clients each asking 5 questions in a row, all at once.

    Client ``i`` asks its questions (:func:`_client_question`) by calling
    ``ask(i, adql)``.
    """
    lock = threading.Lock()
    latencies: list[float] = []

    def client(i: int) -> None:
        for n in range(5):
            adql = _client_question(question, values, keys, i, n)
            t = _time(lambda a=adql: ask(i, a))
            with lock:
                latencies.append(t)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


class WorkersSqlAlone:
    """The SQL of each question's worker tasks, run by DuckDB alone in this process.

    Every question is planned once beforehand (planning is not timed); each
    client has its own cursors with the tasks' views already bound, as a
    worker's idle cursors have them. What is timed is DuckDB running the tasks
    and handing over their Arrow results.
    """

    def __init__(self, engine: QueryEngine, data_dir: Path, threads: int, memory: str) -> None:
        self.engine = engine
        self.data_dir = data_dir
        self._temp = tempfile.TemporaryDirectory(prefix="qcat-bench-")
        self.con = open_locked_database(
            tables_root(data_dir),
            memory_limit=memory,
            threads=duckdb_threads(threads),
            temp_dir=Path(self._temp.name),
            temp_limit="1GB",
            setup_sql=load_setup_sql(WORKER_SETUP_MODULE),
        )
        self._tasks: dict[str, list[tuple[str, dict[str, list[Path]]]]] = {}
        self._cursors: dict[tuple[int, str], duckdb.DuckDBPyConnection] = {}

    def prepare(self, client: int, adql: str) -> None:
        """Plan ``adql`` and bind its tasks' views on ``client``'s cursors."""
        if adql not in self._tasks:
            tasks = []
            for cq in self.engine.explain(adql).chunk_queries:
                for task in cq.tasks:
                    files = {
                        name: [(self.data_dir / f).resolve() for f in paths]
                        for name, paths in task.relations.items()
                    }
                    tasks.append((task.sql or cq.sql, files))
            self._tasks[adql] = tasks
        for _, files in self._tasks[adql]:
            key = (client, repr(sorted(files.items())))
            if key not in self._cursors:
                cursor = self.con.cursor()
                bind_relations(cursor, files)
                self._cursors[key] = cursor

    def __call__(self, client: int, adql: str) -> None:
        for sql, files in self._tasks[adql]:
            self._cursors[(client, repr(sorted(files.items())))].sql(sql).to_arrow_table()

    def close(self) -> None:
        """Close the cursors and the database."""
        for cursor in self._cursors.values():
            cursor.close()
        self.con.close()
        self._temp.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=Path("bench/out/qcat-data"))
    ap.add_argument("--inputs", type=Path, default=Path("bench/out/input-10000000"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--memory-limit", default="4GB")
    ap.add_argument("--threads", type=int, default=0, help="DuckDB threads per worker (0: cores)")
    ap.add_argument("--only", default="", help="run only the questions whose label contains this")
    args = ap.parse_args()

    single = args.inputs / "single"
    single.mkdir(exist_ok=True)
    raw = duckdb.connect()
    for table, pattern in (("object", "Object-*.parquet"), ("source", "Source-*.parquet")):
        target = single / f"{table}.parquet"
        if not target.exists():
            raw.execute(
                f"COPY (SELECT * FROM read_parquet('{args.inputs}/{pattern}')) TO '{target}' "
                "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 100000)"
            )
        raw.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{target}')")
    key = raw.sql("SELECT objectId FROM object LIMIT 1 OFFSET 123457").fetchall()[0][0]
    source_key = raw.sql("SELECT sourceId FROM source LIMIT 1 OFFSET 55555555").fetchall()[0][0]
    ra, dec = CONE_CENTRE
    values = {
        "key": key,
        "source_key": source_key,
        "ra": ra,
        "dec": dec,
        "ra0": ra - 0.61,
        "ra1": ra + 0.61,
        "dec0": dec - 0.61,
        "dec1": dec + 0.61,
    }
    print(f"{args.data}: {args.workers} workers, median of {args.repeat} runs", flush=True)
    with LocalWorkers(
        args.data,
        args.workers,
        memory_limit=args.memory_limit,
        threads_per_worker=args.threads,
        setup_sql_module=WORKER_SETUP_MODULE,
    ) as pool:
        engine = QueryEngine(args.data, pool.locations)
        try:
            for label, template in {**LOW_VOLUME, **MEDIUM, **CHILD_OWN, **REWRITTEN}.items():
                if args.only not in label:
                    continue
                adql = template.format(**values)
                rows = _qcat(engine, adql)  # warm the file cache
                times = [_time(lambda a=adql: _qcat(engine, a)) for _ in range(args.repeat)]
                median_ms = statistics.median(times) * 1000
                print(f"{label:<45} {rows:>9,} rows  median {median_ms:8.1f} ms", flush=True)
            for label, (adql, sql) in FULL_TABLE.items():
                if args.only not in label:
                    continue
                _qcat(engine, adql)
                raw.sql(sql).fetchall()
                ours, base = [], []
                for _ in range(args.repeat):
                    ours.append(_time(lambda a=adql: _qcat(engine, a)))
                    base.append(_time(lambda s=sql: raw.sql(s).to_arrow_table()))
                m_ours, m_base = statistics.median(ours), statistics.median(base)
                print(
                    f"{label:<45} qcat {m_ours * 1000:8.1f} ms  duckdb {m_base * 1000:8.1f} ms  "
                    f"ratio {m_ours / m_base:5.2f}",
                    flush=True,
                )
            if args.only and args.only not in "20 concurrent":
                return
            spread = "SELECT objectId FROM object WHERE objectId % 1009 = 0 ORDER BY 1 LIMIT 20"
            keys = [k for (k,) in raw.sql(spread).fetchall()]
            cone = LOW_VOLUME["cone 0.1 deg"]
            mixed = list(LOW_VOLUME.values())
            alone = WorkersSqlAlone(engine, args.data, args.threads, args.memory_limit)
            try:
                for label, question in (
                    ("20 concurrent 0.1 deg cones (100 queries)", lambda i, n: cone),
                    (
                        "20 concurrent low-volume, mixed (100 queries)",
                        lambda i, n: mixed[(i + n) % 4],
                    ),
                ):
                    for i in range(20):
                        for n in range(5):
                            alone.prepare(i, _client_question(question, values, keys, i, n))
                    floor = statistics.median(_concurrent(alone, question, values, keys))
                    median = statistics.median(
                        _concurrent(lambda i, a: _qcat(engine, a), question, values, keys)
                    )
                    print(
                        f"{label:<45} median {median * 1000:8.1f} ms  "
                        f"(the workers' SQL alone in DuckDB: {floor * 1000:.1f} ms)",
                        flush=True,
                    )
            finally:
                alone.close()
        finally:
            engine.close()


if __name__ == "__main__":
    main()
