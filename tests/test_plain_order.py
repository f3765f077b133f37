"""Plain tables sorted by a chosen column (``IngestOptions.plain_order``), and ObsCore so
written: sorted by s_dec_min, in row groups whose statistics the SIA dec bounds prune."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from partition.images import ingest_images
from partition.images.rows import OBSCORE_TABLE
from partition.ingest import PLAIN_FILE, IngestOptions, current_version_or_none, ingest_table
from qcat.czar.adql import parse_adql
from qcat.czar.catalog import CatalogSnapshot
from qcat.czar.plan import plan
from qcat.czar.resolve import resolve
from qcat.errors import QcatError
from qcat.geometry import SETUP_SQL
from qcat.metadata.store import MetadataStore
from qcat.schema import infer_spec
from qcat.worker.lockdown import bind_relations
from services.settings import ServiceSettings
from services.sia.sia_adql import sia_adql
from services.sia.sia_params import parse_query
from tests.image_headers import celestial_header, write_fits


def plain_file(data: Path, name: str) -> Path:
    store = MetadataStore.for_data_dir(data)
    try:
        version = current_version_or_none(store, name)
    finally:
        store.close()
    assert version is not None
    return data / version.path / PLAIN_FILE


def write_rows(path: Path, ids: np.ndarray, rng: np.random.Generator) -> Path:
    table = pa.table({"id": ids, "score": rng.integers(0, 50, len(ids)).astype(np.float64)})
    pq.write_table(table, path)
    return path


def test_plain_table_sorted_by_column_then_key_and_append_keeps_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    first = write_rows(tmp_path / "a.parquet", rng.permutation(5000), rng)
    second = write_rows(tmp_path / "b.parquet", 5000 + rng.permutation(3000), rng)
    spec = infer_spec(pq.read_schema(first), "t.scores", key="id")
    assert spec.kind == "plain"
    opts = IngestOptions(show_progress=False, plain_order=("score",), row_group_rows=2048)
    data = tmp_path / "data"
    for inputs, total in (([first], 5000), ([second], 8000)):
        ingest_table(data, spec, inputs, opts)
        path = plain_file(data, "t.scores")
        table = pq.read_table(path)
        assert table.num_rows == total
        keys = list(zip(table["score"].to_pylist(), table["id"].to_pylist(), strict=True))
        assert keys == sorted(keys)  # by score, ties by the primary key
        assert pq.read_metadata(path).num_row_groups == -(-total // 2048)
    # without plain_order: by the primary key, as before
    ingest_table(tmp_path / "plain", spec, [first], IngestOptions(show_progress=False))
    ids = pq.read_table(plain_file(tmp_path / "plain", "t.scores"))["id"].to_pylist()
    assert ids == sorted(ids)


def test_unknown_sort_column_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    path = write_rows(tmp_path / "a.parquet", np.arange(10), rng)
    spec = infer_spec(pq.read_schema(path), "t.scores", key="id")
    with pytest.raises(QcatError, match="no column 'nope'"):
        ingest_table(
            tmp_path / "d", spec, [path], IngestOptions(show_progress=False, plain_order=("nope",))
        )


@pytest.fixture(scope="module")
def obscore_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Images at several declinations (one holding the north pole), ingested in two appends."""
    tmp = tmp_path_factory.mktemp("obscore-order")
    data = tmp / "data"
    places = [
        (10.0, 60.0),
        (200.0, -40.0),
        (359.99, 0.5),
        (45.0, 89.995),
        (120.0, -75.0),
        (5.0, 20.0),
    ]
    for batch in (places[:3], places[3:]):
        files = tmp / f"in-{len(batch)}-{batch[0][0]}"
        files.mkdir()
        for i, (ra, dec) in enumerate(batch):
            header = celestial_header(40, 30, ra, dec, rotation_deg=20.0 * i, scale_arcsec=10.0)
            write_fits(files / f"img-{ra:g}-{dec:g}.fits", header)
        ingest_images(data, "demo", [files])
    return data


def test_obscore_is_sorted_by_lowest_dec(obscore_data: Path) -> None:
    table = pq.read_table(plain_file(obscore_data, OBSCORE_TABLE))
    assert table.num_rows == 6
    lows = table["s_dec_min"].to_pylist()
    assert lows == sorted(lows)
    for lo, dec, hi in zip(
        lows, table["s_dec"].to_pylist(), table["s_dec_max"].to_pylist(), strict=True
    ):
        assert lo < dec < hi
    assert max(table["s_dec_max"].to_pylist()) == 90.0  # the image holding the pole


def test_dec_bounds_reach_the_parquet_scan(obscore_data: Path) -> None:
    """The worker SQL of an SIA search keeps the bounds as filters of the Parquet scan, which
    DuckDB checks against each row group's statistics (the table holds one row group here)."""
    adql = sia_adql(parse_query({"POS": ["CIRCLE 30 -10 1"]}, ServiceSettings.defaults()))
    query_plan = plan(
        resolve(parse_adql(adql), CatalogSnapshot.for_data_dir(obscore_data)), obscore_data
    )
    (chunk_query,) = query_plan.chunk_queries
    (task,) = chunk_query.tasks
    con = duckdb.connect()
    for statement in SETUP_SQL:
        con.execute(statement)
    bind_relations(con, {k: [obscore_data / f for f in v] for k, v in task.relations.items()})
    profile = con.execute("EXPLAIN ANALYZE " + chunk_query.sql).fetchall()[0][1]
    scan = profile[profile.index("READ_PARQUET") :]
    filters = scan[scan.index("Filters:") : scan.index("Total Files Read")]
    assert "s_dec_max >=" in filters and "s_dec_min <=" in filters, filters
    assert "Row Groups Scanned: 1 / 1" in scan
    assert con.execute(chunk_query.sql).fetchall() == []
