"""Positional joins between two different director tables, chunk by chunk.

``ext.Star`` is partitioned on its own (coarser than ``demo.Object``), so the
two tables' chunks do not line up. Every answer is compared with astropy's
``search_around_sky`` over the unpartitioned positions.
"""

from __future__ import annotations

from collections.abc import Iterator

import astropy.units as u
import numpy as np
import pyarrow as pa
import pytest
from astropy.coordinates import SkyCoord, search_around_sky

from partition.ingest import IngestOptions, ingest_table
from qcat.schema import infer_spec
from tests.engine_support import Catalog, open_catalog, run
from tests.formats import write_as

MATCH_ARCSEC = 5.0


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalog]:
    root = tmp_path_factory.mktemp("crossmatch")
    with open_catalog(root, n_objects=3000, seed=31, threshold=200) as opened:
        stars = _stars(opened)
        path = write_as(stars, root / "stars.parquet", "parquet")
        spec = infer_spec(stars.schema, "ext.Star", key="starId")
        ingest_table(opened.data, spec, [path], IngestOptions(threshold=900, show_progress=False))
        opened.raw.execute(f"CREATE VIEW star AS SELECT * FROM read_parquet('{path}')")
        yield opened


def _stars(catalog: Catalog) -> pa.Table:
    """Half the objects seen again up to 8 arcsec away, plus as many stars scattered among them."""
    rng = np.random.default_rng(8)
    objects = catalog.demo.objects
    ra = np.asarray(objects["coord_ra"].to_pylist())
    dec = np.asarray(objects["coord_dec"].to_pylist())
    seen = rng.choice(len(ra), len(ra) // 2, replace=False)
    moved = SkyCoord(ra[seen] * u.deg, dec[seen] * u.deg).directional_offset_by(
        rng.uniform(0, 360, len(seen)) * u.deg, rng.uniform(0, 8, len(seen)) * u.arcsec
    )
    scattered = rng.choice(len(ra), len(seen))
    other = SkyCoord(ra[scattered] * u.deg, dec[scattered] * u.deg).directional_offset_by(
        rng.uniform(0, 360, len(seen)) * u.deg, rng.uniform(0.01, 1.0, len(seen)) * u.deg
    )
    star_ra = np.r_[moved.ra.deg, other.ra.deg] % 360.0
    star_dec = np.r_[moved.dec.deg, other.dec.deg]
    return pa.table(
        {
            "starId": np.arange(len(star_ra), dtype=np.int64) + 1,
            "ra": star_ra,
            "dec": star_dec,
            "mag": rng.uniform(12, 20, len(star_ra)),
        }
    )


def _brute_pairs(catalog: Catalog, radius_arcsec: float) -> set[tuple[int, int]]:
    objects = catalog.raw.sql("SELECT objectId, coord_ra, coord_dec FROM object").fetchnumpy()
    stars = catalog.raw.sql("SELECT starId, ra, dec FROM star").fetchnumpy()
    a = SkyCoord(objects["coord_ra"] * u.deg, objects["coord_dec"] * u.deg)
    b = SkyCoord(stars["ra"] * u.deg, stars["dec"] * u.deg)
    i, j, _, _ = search_around_sky(a, b, radius_arcsec * u.arcsec)
    return {
        (int(objects["objectId"][x]), int(stars["starId"][y])) for x, y in zip(i, j, strict=True)
    }


def _distance(a: str, b: str, arcsec: float) -> str:
    return (
        f"DISTANCE(POINT({a}.coord_ra, {a}.coord_dec), POINT({b}.ra, {b}.dec)) < {arcsec / 3600!r}"
    )


def test_pairs_match_astropy(catalog: Catalog) -> None:
    adql = (
        "SELECT o.objectId, s.starId FROM demo.Object AS o JOIN ext.Star AS s "
        f"ON {_distance('o', 's', MATCH_ARCSEC)}"
    )
    query_plan = catalog.engine.explain(adql)
    assert query_plan.notes[0] == "shape: chunk-local (crossmatch)"
    tasks = query_plan.chunk_queries[0].tasks
    assert len(tasks) > 5 and all(t.sql and "_healpix_29 BETWEEN" in t.sql for t in tasks)
    want = _brute_pairs(catalog, MATCH_ARCSEC)
    got = run(catalog, adql)
    assert len(want) > 500 and len(got) == len(set(got)) and set(got) == want


def test_the_other_table_may_drive(catalog: Catalog) -> None:
    adql = (
        "SELECT o.objectId, s.starId FROM ext.Star AS s JOIN demo.Object AS o "
        f"ON CONTAINS(POINT(s.ra, s.dec), CIRCLE(o.coord_ra, o.coord_dec, {3 / 3600!r})) = 1"
    )
    got = run(catalog, adql)
    assert len(got) == len(set(got)) and set(got) == _brute_pairs(catalog, 3.0)


def test_with_a_region_and_aggregates(catalog: Catalog) -> None:
    ((ra, dec),) = catalog.raw.sql("SELECT coord_ra, coord_dec FROM object LIMIT 1").fetchall()
    region = f"CONTAINS(POINT(o.coord_ra, o.coord_dec), CIRCLE({ra!r}, {dec!r}, 1.5)) = 1"
    adql = (
        "SELECT o.objectId, COUNT(*) AS n FROM demo.Object AS o JOIN ext.Star AS s "
        f"ON {_distance('o', 's', 20.0)} WHERE {region} GROUP BY o.objectId ORDER BY o.objectId"
    )
    centre = SkyCoord(ra * u.deg, dec * u.deg)
    objects = catalog.raw.sql("SELECT objectId, coord_ra, coord_dec FROM object").fetchnumpy()
    inside = SkyCoord(objects["coord_ra"] * u.deg, objects["coord_dec"] * u.deg).separation(centre)
    kept = {int(k) for k, d in zip(objects["objectId"], inside.deg, strict=True) if d < 1.5}
    counts: dict[int, int] = {}
    for obj, _ in _brute_pairs(catalog, 20.0):
        if obj in kept:
            counts[obj] = counts.get(obj, 0) + 1
    assert counts and run(catalog, adql) == sorted(counts.items())


def test_a_radius_too_wide_for_chunks_is_gathered_and_exact(catalog: Catalog) -> None:
    adql = (
        "SELECT COUNT(*) FROM demo.Object AS o JOIN ext.Star AS s "
        "ON DISTANCE(POINT(o.coord_ra, o.coord_dec), POINT(s.ra, s.dec)) < 40 "
        "WHERE o.objectId < (SELECT MIN(objectId) FROM demo.Object) + 20000"
    )
    assert catalog.engine.explain(adql).shape == "gather"
    objects = catalog.raw.sql(
        "SELECT coord_ra, coord_dec FROM object "
        "WHERE objectId < (SELECT min(objectId) FROM object) + 20000"
    ).fetchnumpy()
    stars = catalog.raw.sql("SELECT ra, dec FROM star").fetchnumpy()
    a = SkyCoord(objects["coord_ra"] * u.deg, objects["coord_dec"] * u.deg)
    b = SkyCoord(stars["ra"] * u.deg, stars["dec"] * u.deg)
    i, _, _, _ = search_around_sky(a, b, 40 * u.deg)
    assert len(a) > 0 and run(catalog, adql) == [(len(i),)]
