"""Golden fixtures: ADQL -> plan shape, per-chunk SQL and merge SQL, for every feature.

Each ``tests/golden/queries/NAME.adql`` is planned against a fixed demo
catalog and the plan is compared with ``tests/golden/expected/NAME.txt``.
A change in the generated SQL shows up as a readable diff; after checking
it, regenerate with ``QCAT_UPDATE_GOLDEN=1 uv run pytest tests/test_golden_plans.py``.
Every fixture also runs through real workers (``test_query_engine`` checks
answers; here it must simply run), so a fixture cannot hold SQL DuckDB rejects.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from partition.ingest import IngestOptions, ingest_table
from qcat.czar.engine import WORKER_SETUP_MODULE, QueryEngine
from qcat.czar.plan import QueryPlan
from qcat.schema import infer_spec
from qcat.worker.pool import LocalWorkers
from tests.conftest import ingest_demo_table, make_demo
from tests.formats import write_as

GOLDEN = Path(__file__).parent / "golden"
QUERIES = sorted((GOLDEN / "queries").glob("*.adql"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    demo = make_demo(2000, seed=3)
    root = tmp_path_factory.mktemp("golden")
    for table, rows in (("demo.Object", demo.objects), ("demo.Source", demo.sources)):
        path = write_as(rows, root / f"{table}.parquet", "parquet")
        ingest_demo_table(root / "data", demo, table, path, 300)
    # A second director table, partitioned on its own, for crossmatches.
    stars = pa.table(
        {
            "starId": pa.array(range(1, 1001), pa.int64()),
            "ra": demo.objects["coord_ra"].slice(0, 1000),
            "dec": demo.objects["coord_dec"].slice(0, 1000),
        }
    )
    path = write_as(stars, root / "stars.parquet", "parquet")
    spec = infer_spec(stars.schema, "ext.Star", key="starId")
    ingest_table(root / "data", spec, [path], IngestOptions(threshold=400, show_progress=False))
    return root / "data"


@pytest.fixture(scope="module")
def engine(data_dir: Path) -> Iterator[QueryEngine]:
    with LocalWorkers(data_dir, 2, memory_limit="256MB", setup_sql_module=WORKER_SETUP_MODULE) as w:
        engine = QueryEngine(data_dir, w.locations, timeout_s=120)
        try:
            yield engine
        finally:
            engine.close()


def render(plan: QueryPlan) -> str:
    """The plan as the golden text: shape, notes, chunk queries with task counts, merge."""
    lines = [f"shape: {plan.shape}", *(f"note: {n}" for n in plan.notes)]
    for cq in plan.chunk_queries:
        lines.append(f"chunk query {cq.name} ({len(cq.tasks)} tasks):")
        lines.append(f"  {cq.sql}")
        own = [t for t in cq.tasks if t.sql is not None]
        if own:  # tasks that narrow the chunk query to their own neighbourhood
            lines.append(f"first of {len(own)} task(s) with their own SQL, chunk {own[0].key}:")
            lines.append(f"  {own[0].sql}")
    lines.append("merge:")
    lines.append(f"  {plan.merge_sql}")
    return "\n".join(lines) + "\n"


def test_every_query_has_an_expected_plan() -> None:
    expected = {p.stem for p in (GOLDEN / "expected").glob("*.txt")}
    assert {q.stem for q in QUERIES} == expected or os.environ.get("QCAT_UPDATE_GOLDEN")
    assert len(QUERIES) >= 35


@pytest.mark.parametrize("query", QUERIES, ids=lambda p: p.stem)
def test_plan_matches_golden(query: Path, engine: QueryEngine) -> None:
    got = render(engine.explain(query.read_text()))
    expected = GOLDEN / "expected" / f"{query.stem}.txt"
    if os.environ.get("QCAT_UPDATE_GOLDEN"):
        expected.write_text(got)
    assert got == expected.read_text()


@pytest.mark.parametrize("query", QUERIES, ids=lambda p: p.stem)
def test_golden_query_runs(query: Path, engine: QueryEngine) -> None:
    result = engine.execute(query.read_text())
    table = result.read_all()
    assert table.num_columns == len(result.columns)
