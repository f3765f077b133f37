"""Attached HATS catalogs are queried where they lie, by workers started before the attach.

An archive's published catalog (here: a copy of an ingested one, moved
outside any data directory) is attached with ``qcat ingest --attach`` while
the workers already run; its answers are checked against astropy and plain
DuckDB over the unpartitioned input rows. The workers still refuse every
other file outside ``tables/``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import astropy.units as u
import pyarrow as pa
import pytest
from astropy.coordinates import SkyCoord, search_around_sky

from qcat.czar.engine import WORKER_SETUP_MODULE, QueryEngine
from qcat.metadata.store import MetadataStore
from qcat.worker.client import WorkerClient
from qcat.worker.errors import TaskError
from qcat.worker.pool import LocalWorkers
from qcat.worker.task import ChunkTask
from tests.conftest import qcat_cli
from tests.engine_support import Catalog, assert_rows_close, open_catalog, raw


def _neighbours_adql(table: str, radius: float) -> str:
    return (
        f"SELECT a.objectId, b.objectId FROM {table} a JOIN {table} b "
        "ON DISTANCE(POINT(a.coord_ra, a.coord_dec), POINT(b.coord_ra, b.coord_dec)) "
        f"< {radius!r} WHERE a.objectId <> b.objectId"
    )


@pytest.fixture(scope="module")
def attached(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Catalog, QueryEngine]]:
    """The demo Object table ingested (the reference) and a copy of it attached elsewhere."""
    root = tmp_path_factory.mktemp("attached")
    with open_catalog(root, n_objects=3000, threshold=300) as catalog:
        version = catalog.engine.catalog().table("demo.Object").version
        archive = root / "archive" / "object_hats"
        shutil.copytree(catalog.data / version.path / "catalog", archive)
        served = root / "served"
        with LocalWorkers(
            served, 2, memory_limit="256MB", setup_sql_module=WORKER_SETUP_MODULE
        ) as workers:
            # The workers run before the catalog exists in their metadata.
            qcat_cli(
                "ingest", "--data", served, "--attach", archive, "--table", "arch.obj",
                "--key", "objectId",
            )  # fmt: skip
            engine = QueryEngine(served, workers.locations, timeout_s=120)
            try:
                yield catalog, engine
            finally:
                engine.close()


def _coords(objects: pa.Table) -> SkyCoord:
    return SkyCoord(objects["coord_ra"].to_numpy() * u.deg, objects["coord_dec"].to_numpy() * u.deg)


def _rows(engine: QueryEngine, adql: str) -> list[tuple[object, ...]]:
    table = engine.execute(adql).read_all()
    return list(zip(*(c.to_pylist() for c in table.columns), strict=True))


def test_aggregates_match_the_input_rows(attached: tuple[Catalog, QueryEngine]) -> None:
    catalog, engine = attached
    got = _rows(
        engine,
        "SELECT refBand, COUNT(*), AVG(r_psfMag), MAX(objectId) FROM arch.obj "
        "GROUP BY refBand ORDER BY refBand",
    )
    want = raw(
        catalog,
        "SELECT refBand, count(*), avg(r_psfMag), max(objectId) FROM object "
        "GROUP BY refBand ORDER BY refBand",
    )
    assert_rows_close(got, want)


def test_cones_and_key_lookups(attached: tuple[Catalog, QueryEngine]) -> None:
    catalog, engine = attached
    objects = catalog.demo.objects
    ids = objects["objectId"].to_numpy()
    coords = SkyCoord(
        objects["coord_ra"].to_numpy() * u.deg, objects["coord_dec"].to_numpy() * u.deg
    )
    for ra, dec, radius in ((10.0, -5.0, 8.0), (359.0, 2.0, 5.0), (150.0, 60.0, 12.0)):
        want = set(ids[coords.separation(SkyCoord(ra * u.deg, dec * u.deg)).deg <= radius].tolist())
        got = _rows(
            engine,
            "SELECT objectId FROM arch.obj WHERE "
            f"CONTAINS(POINT(coord_ra, coord_dec), CIRCLE({ra}, {dec}, {radius})) = 1",
        )
        assert want and {r[0] for r in got} == want
    key = int(ids[1234])
    lookup = f"SELECT objectId, g_psfMag FROM arch.obj WHERE objectId = {key}"
    assert len(engine.explain(lookup).chunk_queries[0].tasks) == 1  # the director index
    assert_rows_close(
        _rows(engine, lookup),
        raw(catalog, f"SELECT objectId, g_psfMag FROM object WHERE objectId = {key}"),
    )


def test_neighbours_without_a_margin_catalog(attached: tuple[Catalog, QueryEngine]) -> None:
    """An attached catalog has no margin catalog: neighbours are found across chunk edges
    by reading each chunk's neighbourhood, at radii beyond the ingested table's margin."""
    catalog, engine = attached
    radius = 150 / 3600.0
    adql = _neighbours_adql("arch.obj", radius)
    assert engine.explain(adql).notes[0] == "shape: chunk-local (crossmatch)"
    objects = catalog.demo.objects
    ids = objects["objectId"].to_numpy()
    coords = SkyCoord(
        objects["coord_ra"].to_numpy() * u.deg, objects["coord_dec"].to_numpy() * u.deg
    )
    i, j, _, _ = search_around_sky(coords, coords, radius * u.deg)
    want = {(int(ids[a]), int(ids[b])) for a, b in zip(i, j, strict=True) if a != b}
    assert want and set(_rows(engine, adql)) == want


def test_tasks_arriving_together_all_learn_of_the_attach(
    attached: tuple[Catalog, QueryEngine],
) -> None:
    """A fresh worker's first query is many tasks at once naming attached files: each
    task, not only the one that reopened the database, must find them."""
    _, engine = attached
    adql = _neighbours_adql("arch.obj", 100 / 3600.0)
    want = set(_rows(engine, adql))
    for _ in range(3):
        with LocalWorkers(
            engine.data_dir, 1, memory_limit="256MB", setup_sql_module=WORKER_SETUP_MODULE
        ) as fresh:
            other = QueryEngine(engine.data_dir, fresh.locations, timeout_s=120)
            try:
                assert set(_rows(other, adql)) == want
            finally:
                other.close()


def test_a_catalog_attached_later_is_seen_by_the_running_engine(
    attached: tuple[Catalog, QueryEngine], tmp_path: Path
) -> None:
    catalog, engine = attached
    assert _rows(engine, "SELECT COUNT(*) FROM arch.obj") == [(catalog.demo.objects.num_rows,)]
    version = catalog.engine.catalog().table("demo.Source").version
    archive = tmp_path / "source_hats"
    shutil.copytree(catalog.data / version.path / "catalog", archive)
    qcat_cli("ingest", "--data", engine.data_dir, "--attach", archive, "--table", "arch.src")
    got = _rows(engine, "SELECT band, COUNT(*) FROM arch.src GROUP BY band ORDER BY band")
    assert got == raw(catalog, "SELECT band, count(*) FROM source GROUP BY band ORDER BY band")


def test_workers_read_attached_catalogs_only(attached: tuple[Catalog, QueryEngine]) -> None:
    catalog, engine = attached
    store = MetadataStore.for_data_dir(engine.data_dir)
    try:
        archives = store.attached_dirs()
        inside = store.partitions("arch.obj")[0].path
    finally:
        store.close()
    assert any(Path(inside).is_relative_to(a) for a in archives)
    # A Parquet file outside both tables/ and the attached catalog: the ingested reference.
    reference = catalog.engine.catalog().table("demo.Object").chunks[0].path
    outside = str((catalog.data / reference).resolve())
    client = WorkerClient(engine.dispatcher.locations[0])
    try:
        deadline = time.time() + 60

        def task(path: str) -> ChunkTask:
            return ChunkTask("q", "t", "SELECT count(*) AS n FROM r", {"r": [path]}, deadline)

        assert client.run(task(inside)).read_all()["n"][0].as_py() > 0
        with pytest.raises(TaskError, match="is not in an attached catalog"):
            client.run(task(outside)).read_all()
        # DuckDB's own lockdown holds too: SQL naming the file directly is refused.
        with pytest.raises(TaskError, match="Permission"):
            client.run(
                ChunkTask(
                    "q", "t2", f"SELECT count(*) FROM read_parquet('{outside}')", {}, deadline
                )
            ).read_all()
        tables = {t["table"] for t in client.inventory()}
        assert "arch.obj" in tables
    finally:
        client.close()
