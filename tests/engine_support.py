"""A demo catalog on real workers with a brute-force oracle beside it (shared by query tests).

:func:`open_catalog` ingests a small demo survey into many small chunks
(at most ``threshold`` rows each, so regions cross many chunk boundaries),
starts worker processes and a :class:`QueryEngine`, and opens a plain
DuckDB connection over the *unpartitioned* input files as the oracle:
views ``object``, ``source`` (and ``visit`` when asked for) hold exactly
the rows that were ingested.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from partition.ingest import IngestOptions, ingest_table
from qcat.czar.engine import WORKER_SETUP_MODULE, QueryEngine
from qcat.schema import infer_spec
from qcat.worker.pool import LocalWorkers
from tests.conftest import DemoTables, make_demo
from tests.formats import write_as

Row = tuple[object, ...]


@dataclass
class Catalog:
    """The engine over a demo catalog, and the oracle over the same rows."""

    demo: DemoTables
    raw: duckdb.DuckDBPyConnection
    engine: QueryEngine
    data: Path
    locations: list[str]
    visits: pa.Table | None = None


def make_visits(n: int, seed: int = 5) -> pa.Table:
    """A small table without positions (copied whole to every worker): telescope visits."""
    rng = np.random.default_rng(seed)
    exposure = rng.uniform(15.0, 60.0, n)
    return pa.table(
        {
            "visitId": pa.array(np.arange(1, n + 1, dtype=np.int64)),
            "band": pa.array(rng.choice(list("ugrizy"), n).tolist()),
            "pointRa": pa.array(rng.uniform(0.0, 360.0, n)),
            "pointDec": pa.array(np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))),
            "exposure": pa.array(exposure, mask=rng.uniform(size=n) < 0.1),
        }
    )


@contextmanager
def open_catalog(
    root: Path,
    *,
    n_objects: int = 4000,
    seed: int = 11,
    threshold: int = 300,
    workers: int = 2,
    visits: int = 0,
    timeout_s: float = 120.0,
    row_group_rows: int = 100_000,
    object_id_offset: int = 0,
    source_key_index: bool = False,
) -> Iterator[Catalog]:
    """Ingest a demo catalog under ``root``, start ``workers`` workers and an engine.

    ``visits`` > 0 adds the plain table ``survey.Visit`` (see :func:`make_visits`).
    ``row_group_rows`` sets the Parquet row groups of the partition files.
    ``object_id_offset`` is added to every objectId (survey-sized ids, past 2**53).
    ``source_key_index`` also indexes Source's own key (``sourceId``).
    """
    demo = make_demo(n_objects, seed=seed)
    if object_id_offset:
        demo = shift_object_ids(demo, object_id_offset)
    objects = write_as(demo.objects, root / "objects.parquet", "parquet")
    sources = write_as(demo.sources, root / "sources.parquet", "parquet")
    data = root / "data"
    # In-process ingest (the CLI's own tests cover ``qcat ingest``): seconds faster.
    options = IngestOptions(threshold=threshold, row_group_rows=row_group_rows, show_progress=False)
    ingest_table(data, demo.object_spec, [objects], options)
    ingest_table(
        data, demo.source_spec, [sources], replace(options, child_key_index=source_key_index)
    )
    raw = duckdb.connect()
    raw.execute(f"CREATE VIEW object AS SELECT * FROM read_parquet('{objects}')")
    raw.execute(f"CREATE VIEW source AS SELECT * FROM read_parquet('{sources}')")
    visit_table = None
    if visits:
        visit_table = make_visits(visits)
        path = write_as(visit_table, root / "visits.parquet", "parquet")
        spec = infer_spec(visit_table.schema, "survey.Visit")
        ingest_table(data, spec, [path], IngestOptions(show_progress=False))
        raw.execute(f"CREATE VIEW visit AS SELECT * FROM read_parquet('{path}')")
    with LocalWorkers(
        data, workers, memory_limit="512MB", setup_sql_module=WORKER_SETUP_MODULE
    ) as w:
        engine = QueryEngine(data, w.locations, timeout_s=timeout_s)
        try:
            yield Catalog(demo, raw, engine, data, list(w.locations), visit_table)
        finally:
            engine.close()
            raw.close()


def shift_object_ids(demo: DemoTables, offset: int) -> DemoTables:
    """``demo`` with ``offset`` added to the objectIds of both tables (exactly, as int64)."""

    def shifted(table: pa.Table) -> pa.Table:
        index = table.schema.get_field_index("objectId")
        ids = pc.add_checked(table.column(index), pa.scalar(offset, pa.int64()))
        return table.set_column(index, table.schema.field(index), ids)

    return replace(demo, objects=shifted(demo.objects), sources=shifted(demo.sources))


def run(catalog: Catalog, adql: str) -> list[Row]:
    """The rows ``adql`` returns through the engine and the workers."""
    table = catalog.engine.execute(adql).read_all()
    return list(zip(*(c.to_pylist() for c in table.columns), strict=True))


def raw(catalog: Catalog, sql: str) -> list[Row]:
    """The rows plain DuckDB returns for ``sql`` over the unpartitioned input."""
    return [tuple(r) for r in catalog.raw.sql(sql).fetchall()]


def _plain(value: object) -> object:
    """Decimals (DuckDB's HUGEINT sums reach Arrow as decimal128) as int or float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _sort_key(row: Row) -> tuple[tuple[int, str], ...]:
    # Floats rounded to 9 digits so that values equal within tolerance sort alike.
    return tuple(
        (1, "") if v is None else (0, f"{v:.9g}" if isinstance(v, float) else repr(v))
        for v in map(_plain, row)
    )


def assert_rows_close(
    got: Sequence[Row], want: Sequence[Row], *, ordered: bool = True, rel: float = 1e-9
) -> None:
    """Rows equal, floats within ``rel`` relative (NaN equals NaN); any order unless ``ordered``.

    Lists (geometry values) are compared item by item.
    """
    assert len(got) == len(want), (len(got), len(want), list(got[:5]), list(want[:5]))
    if not ordered:
        got, want = sorted(got, key=_sort_key), sorted(want, key=_sort_key)
    for g, w in zip(got, want, strict=True):
        assert len(g) == len(w), (g, w)
        for a, b in zip(g, w, strict=True):
            assert values_close(a, b, rel), (a, b, g, w)


def values_close(a: object, b: object, rel: float = 1e-9) -> bool:
    """Whether two result values agree (see :func:`assert_rows_close`)."""
    a, b = _plain(a), _plain(b)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return False
        return all(values_close(x, y, rel) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        if not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
            return False
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)
    return a == b
