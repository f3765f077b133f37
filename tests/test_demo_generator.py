"""The demo catalog generator: schema, determinism, ids, geometry and realism."""

from __future__ import annotations

import math
from pathlib import Path

import astropy.units as u
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from astropy.coordinates import SkyCoord
from felis.datamodel import Schema

from qcat.demo import (
    DemoFiles,
    object_batches,
    schema_path,
    source_batches,
    write_demo_files,
)
from qcat.demo.flags import ObjectFlag
from qcat.demo.photometry import BANDS
from qcat.demo.sky import EMPTY_REGIONS, GALACTIC_TO_ICRS, galactic_to_icrs, offset_positions
from qcat.errors import ConfigError, SchemaError
from qcat.schema import load_felis

N_OBJECTS = 200_000
STRICT_FELIS = {
    "check_description": True,
    "check_tap_principal": True,
    "check_tap_table_indexes": True,
    "check_redundant_datatypes": True,
}


@pytest.fixture(scope="module")
def tables() -> dict:
    return load_felis(schema_path())


@pytest.fixture(scope="module")
def objects() -> pa.Table:
    """200k objects in three batches (so ids cross batch boundaries)."""
    return pa.Table.from_batches(list(object_batches(N_OBJECTS, seed=7, batch_rows=80_000)))


@pytest.fixture(scope="module")
def object_slice(objects: pa.Table) -> pa.RecordBatch:
    return objects.slice(0, 20_000).combine_chunks().to_batches()[0]


@pytest.fixture(scope="module")
def sources(object_slice: pa.RecordBatch) -> pa.RecordBatch:
    return source_batches(object_slice, seed=3, first_source_id=5_000)


def _np(table: pa.Table | pa.RecordBatch, column: str) -> np.ndarray:
    return np.asarray(table.column(column).to_numpy(zero_copy_only=False))


def _sky(table: pa.Table | pa.RecordBatch, ra: str, dec: str) -> SkyCoord:
    return SkyCoord(_np(table, ra) * u.deg, _np(table, dec) * u.deg)


# --- schema -----------------------------------------------------------------


def test_schema_is_valid_felis_with_full_metadata() -> None:
    with schema_path().open() as f:
        schema = Schema.from_stream(f, context=STRICT_FELIS)
    assert schema.name == "demo"
    assert [t.name for t in schema.tables] == ["Object", "Source"]
    for table in schema.tables:
        assert table.description
        assert any(c.tap_principal for c in table.columns)
        for column in table.columns:
            assert column.description, column.name
            assert column.ivoa_unit is not None, column.name
            assert u.Unit(column.ivoa_unit) is not None
            assert column.ivoa_ucd, column.name
    by_name = {t.name: {c.name: c for c in t.columns} for t in schema.tables}
    assert by_name["Object"]["coord_ra"].ivoa_ucd == "pos.eq.ra;meta.main"
    assert by_name["Object"]["coord_dec"].ivoa_ucd == "pos.eq.dec;meta.main"
    assert by_name["Source"]["ra"].ivoa_ucd == "pos.eq.ra"
    assert by_name["Source"]["dec"].ivoa_ucd == "pos.eq.dec"
    assert by_name["Object"]["r_psfFlux"].ivoa_unit == "nJy"
    assert by_name["Object"]["u_psfFlux"].ivoa_ucd == "phot.flux;em.opt.U"
    assert by_name["Object"]["g_psfFlux"].ivoa_ucd == "phot.flux;em.opt.B"
    assert by_name["Object"]["r_psfMag"].ivoa_unit == "mag"
    source = schema.tables[1]
    (fk,) = [c for c in source.constraints if c.type == "ForeignKey"]
    assert fk.columns == ["#Source.objectId"]
    assert fk.referenced_columns == ["#Object.objectId"]


def test_load_felis_sees_director_and_child(tables: dict) -> None:
    obj, src = tables["demo.Object"], tables["demo.Source"]
    assert obj.kind == "director"
    assert obj.director_key == "objectId"
    assert (obj.ra_column, obj.dec_column) == ("coord_ra", "coord_dec")
    assert src.kind == "child"
    assert src.director_table == "demo.Object"
    assert src.director_fk_column == "objectId"
    assert src.director_ref_column == "objectId"
    assert src.primary_key == ("sourceId",)
    not_null = {c.name for c in obj.columns if not c.nullable}
    assert {"objectId", "coord_ra", "coord_dec"} <= not_null
    assert obj.column("r_psfMag").nullable and obj.column("refExtendedness").nullable
    assert {c.name for c in src.columns if not c.nullable} >= {"sourceId", "objectId", "ra", "dec"}
    assert [f"{b}_psfFlux" for b in BANDS] == [c for c in obj.column_names if c.endswith("psfFlux")]


def test_batches_have_the_schema_columns_and_types(
    tables: dict, objects: pa.Table, sources: pa.RecordBatch
) -> None:
    assert objects.schema == tables["demo.Object"].arrow_schema()
    assert sources.schema == tables["demo.Source"].arrow_schema()
    assert objects.schema.field("refBand").type == pa.string()
    assert objects.schema.field("coord_raErr").type == pa.float32()


# --- determinism --------------------------------------------------------------


def test_object_batches_are_deterministic() -> None:
    first = list(object_batches(5_000, seed=11, batch_rows=2_000))
    again = list(object_batches(5_000, seed=11, batch_rows=2_000))
    other = list(object_batches(5_000, seed=12, batch_rows=2_000))
    assert [b.num_rows for b in first] == [2_000, 2_000, 1_000]
    assert all(a.equals(b) for a, b in zip(first, again, strict=True))
    assert not first[0].column("coord_ra").equals(other[0].column("coord_ra"))
    assert not first[2].column("r_psfFlux").equals(other[2].column("r_psfFlux"))


def test_source_batches_are_deterministic(object_slice: pa.RecordBatch) -> None:
    small = object_slice.slice(0, 2_000)
    one = source_batches(small, seed=5, first_source_id=1)
    assert one.equals(source_batches(small, seed=5, first_source_id=1))
    assert not one.column("ra").equals(source_batches(small, seed=6, first_source_id=1)["ra"])


def _write(out: Path, seed: int, calls: list[int] | None = None) -> DemoFiles:
    return write_demo_files(
        out,
        3_000,
        seed=seed,
        mean_sources_per_object=3.0,
        rows_per_file=1_000,
        progress=None if calls is None else calls.append,
    )


def test_write_demo_files_is_bit_identical_and_complete(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    stale = tmp_path / "a" / "Source-00042.parquet"
    stale.write_bytes(b"left over from a larger run")
    keep = tmp_path / "a" / "Object-notes.parquet"
    keep.write_bytes(b"not ours")
    calls: list[int] = []
    a = _write(tmp_path / "a", seed=4, calls=calls)
    b = _write(tmp_path / "b", seed=4)
    c = _write(tmp_path / "c", seed=5)

    assert calls == [1_000, 1_000, 1_000]
    assert not stale.exists() and keep.exists()
    assert [p.name for p in a.objects] == [f"Object-0000{i}.parquet" for i in range(3)]
    assert [p.name for p in a.sources] == [f"Source-0000{i}.parquet" for i in range(3)]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(
        [p.name for p in a.objects + a.sources] + ["demo.yaml", keep.name]
    )
    assert a.schema.read_bytes() == schema_path().read_bytes()
    for mine, theirs in zip(a.objects + a.sources, b.objects + b.sources, strict=True):
        assert mine.read_bytes() == theirs.read_bytes()
    assert a.objects[0].read_bytes() != c.objects[0].read_bytes()

    obj = pq.read_table(a.objects)
    src = pq.read_table(a.sources)
    assert (a.n_objects, a.n_sources) == (obj.num_rows, src.num_rows) == (3_000, b.n_sources)
    assert 0.9 * 9_000 < src.num_rows < 1.1 * 9_000
    assert pq.ParquetFile(a.sources[0]).metadata.row_group(0).column(0).compression == "ZSTD"
    tables = load_felis(a.schema)
    assert obj.schema == tables["demo.Object"].arrow_schema()
    assert src.schema == tables["demo.Source"].arrow_schema()
    # Keys across files: unique ids, and every source's object exists.
    assert pc.count_distinct(obj["objectId"]).as_py() == obj.num_rows
    assert pc.count_distinct(src["sourceId"]).as_py() == src.num_rows
    assert pc.all(pc.is_in(src["objectId"], value_set=obj["objectId"])).as_py()


# --- ids ---------------------------------------------------------------------


def test_object_ids_unique_large_and_increasing(objects: pa.Table) -> None:
    ids = _np(objects, "objectId")
    assert len(np.unique(ids)) == len(ids)
    assert np.all(np.diff(ids) > 0)
    assert ids.min() > 1_000_000
    assert not np.array_equal(ids, np.arange(ids[0], ids[0] + len(ids)))


def test_source_ids_unique_and_objects_exist(
    object_slice: pa.RecordBatch, sources: pa.RecordBatch
) -> None:
    source_ids = _np(sources, "sourceId")
    np.testing.assert_array_equal(source_ids, 5_000 + np.arange(len(source_ids)))
    assert np.isin(_np(sources, "objectId"), _np(object_slice, "objectId")).all()


# --- geometry ----------------------------------------------------------------


def test_galactic_rotation_matches_astropy() -> None:
    np.testing.assert_allclose(GALACTIC_TO_ICRS @ GALACTIC_TO_ICRS.T, np.eye(3), atol=1e-12)
    rng = np.random.default_rng(0)
    glon = rng.uniform(0, 360, 2_000)
    glat = np.degrees(np.arcsin(rng.uniform(-1, 1, 2_000)))
    ra, dec = galactic_to_icrs(glon, glat)
    expected = SkyCoord(l=glon * u.deg, b=glat * u.deg, frame="galactic").icrs
    assert expected.separation(SkyCoord(ra * u.deg, dec * u.deg)).arcsec.max() < 0.1


def test_offsets_are_exact_on_the_sphere_including_poles_and_ra_seam() -> None:
    ra = np.array([0.0, 359.99999, 0.00001, 123.0, 45.0, 200.0, 10.0])
    dec = np.array([90.0, 89.99999, -89.99995, -90.0, 0.0, -30.0, 60.0])
    east = np.array([0.3, -0.2, 0.1, 0.0, -0.15, 0.0, 0.0]) / 3600
    north = np.array([0.1, 0.05, -0.2, 0.2, 0.1, 0.0, -0.4]) / 3600
    new_ra, new_dec = offset_positions(ra, dec, east, north)
    assert np.all((new_ra >= 0) & (new_ra < 360)) and np.all(np.abs(new_dec) <= 90)
    start = SkyCoord(ra * u.deg, dec * u.deg)
    moved = SkyCoord(new_ra * u.deg, new_dec * u.deg)
    np.testing.assert_allclose(
        start.separation(moved).arcsec, np.hypot(east, north) * 3600, atol=1e-6
    )
    # Away from the poles the direction is right too (east of north).
    regular = np.abs(dec) < 80
    angle = start[regular].position_angle(moved[regular]).deg
    expected = np.degrees(np.arctan2(east[regular], north[regular])) % 360
    moving = np.hypot(east[regular], north[regular]) > 0
    np.testing.assert_allclose(angle[moving], expected[moving], atol=1e-3)


def test_sources_lie_within_an_arcsecond_of_their_object(
    object_slice: pa.RecordBatch, sources: pa.RecordBatch
) -> None:
    rng = np.random.default_rng(1)
    sample = np.sort(rng.choice(sources.num_rows, 20_000, replace=False))
    picked = sources.take(pa.array(sample))
    row_of = {oid: k for k, oid in enumerate(_np(object_slice, "objectId"))}
    owners = pa.array([row_of[oid] for oid in _np(picked, "objectId")])
    sep = _sky(picked, "ra", "dec").separation(
        _sky(object_slice.take(owners), "coord_ra", "coord_dec")
    )
    assert sep.arcsec.max() < 1.0
    assert 0.03 < np.median(sep.arcsec) < 0.3


def test_source_jitter_near_the_poles_and_ra_seam(object_slice: pa.RecordBatch) -> None:
    ras = [0.0, 359.9999, 180.0, 0.0002, 90.0, 270.0]
    decs = [90.0, 89.9999, -89.9999, 10.0, -90.0, 89.99]
    base = pa.Table.from_batches([object_slice.slice(0, len(ras))])
    base = base.set_column(1, "coord_ra", pa.array(ras)).set_column(2, "coord_dec", pa.array(decs))
    batch = base.cast(object_slice.schema).combine_chunks().to_batches()[0]
    src = source_batches(batch, seed=9, first_source_id=1, mean_per_object=400.0)
    ra, dec = _np(src, "ra"), _np(src, "dec")
    assert np.all((ra >= 0) & (ra < 360)) and np.all(np.abs(dec) <= 90)
    owner = np.searchsorted(_np(batch, "objectId"), _np(src, "objectId"))
    sep = _sky(src, "ra", "dec").separation(
        _sky(batch.take(pa.array(owner)), "coord_ra", "coord_dec")
    )
    assert sep.arcsec.max() < 1.0
    assert np.median(sep.arcsec) > 0.03  # really scattered, not collapsed onto the pole


# --- sky density --------------------------------------------------------------


def _band_area_sq_deg(lat_min: float, lat_max: float) -> float:
    steradians = 2 * math.pi * (math.sin(math.radians(lat_max)) - math.sin(math.radians(lat_min)))
    return steradians * (180 / math.pi) ** 2


def test_density_follows_the_galaxy(objects: pa.Table) -> None:
    galactic = _sky(objects, "coord_ra", "coord_dec").galactic
    glon, glat = galactic.l.deg, galactic.b.deg
    plane = np.sum(np.abs(glat) < 2) / _band_area_sq_deg(-2, 2)
    high = np.sum(np.abs(glat) > 60) / (2 * _band_area_sq_deg(60, 90))
    assert plane > 10 * high > 0
    centre = (np.abs(glat) < 5) & ((glon < 5) | (glon > 355))
    anticentre = (np.abs(glat) < 5) & (np.abs(glon - 180) < 5)
    assert centre.sum() > 3 * anticentre.sum() > 0


def test_empty_regions_are_empty_but_their_surroundings_are_not(objects: pa.Table) -> None:
    coords = _sky(objects, "coord_ra", "coord_dec")
    for region in EMPTY_REGIONS:
        sep = coords.separation(SkyCoord(region.ra * u.deg, region.dec * u.deg)).deg
        assert np.sum(sep < region.radius_deg) == 0, region.name
        assert np.sum((sep >= region.radius_deg) & (sep < region.radius_deg + 2)) > 20, region.name
    # One mask straddles RA = 0/360.
    assert any(r.ra - r.radius_deg < 0 for r in EMPTY_REGIONS)


def test_whole_sky_is_reached(objects: pa.Table) -> None:
    ra, dec = _np(objects, "coord_ra"), _np(objects, "coord_dec")
    assert np.all((ra >= 0) & (ra < 360)) and np.all(np.abs(dec) <= 90)
    assert np.sum(dec > 88) > 0 and np.sum(dec < -88) > 0
    assert np.sum(ra < 1) > 0 and np.sum(ra > 359) > 0


# --- photometry ----------------------------------------------------------------


def test_magnitudes_null_exactly_where_flux_is_not_positive(objects: pa.Table) -> None:
    total_nulls = 0
    for band in BANDS:
        flux = _np(objects, f"{band}_psfFlux")
        mag = objects.column(f"{band}_psfMag")
        null = np.asarray(mag.is_null().to_numpy(zero_copy_only=False))
        np.testing.assert_array_equal(null, flux <= 0)
        values = np.asarray(mag.drop_null().to_numpy())
        np.testing.assert_allclose(values, -2.5 * np.log10(flux[flux > 0]) + 31.4, rtol=1e-12)
        total_nulls += int(null.sum())
    assert total_nulls > 0
    assert objects.column("u_psfFlux").null_count == 0
    any_negative = np.column_stack([_np(objects, f"{b}_psfFlux") <= 0 for b in BANDS]).any(axis=1)
    flagged = (_np(objects, "flags") & int(ObjectFlag.NEGATIVE_FLUX)) != 0
    np.testing.assert_array_equal(flagged, any_negative)


def test_photometry_looks_like_a_survey(objects: pa.Table) -> None:
    r = _np(objects, "r_psfMag")
    rel_err = _np(objects, "r_psfFluxErr") / _np(objects, "r_psfFlux")
    medians = [np.median(rel_err[(r >= lo) & (r < lo + 1)]) for lo in (18, 20, 22, 24)]
    assert medians == sorted(medians) and medians[-1] > 5 * medians[0]
    assert 23 < np.median(r) < 25.5 and np.nanmin(r) < 18
    bright = r < 22
    g_r = _np(objects, "g_psfMag")[bright] - r[bright]
    assert 0.2 < np.nanmedian(g_r) < 1.5
    u_flux = _np(objects, "u_psfFlux")
    u_err = _np(objects, "u_psfFluxErr")
    negative = u_flux <= 0
    assert negative.any() and np.all(u_flux[negative] / u_err[negative] > -6)
    ext = objects.column("refExtendedness")
    assert 0 < ext.null_count < 0.2 * objects.num_rows
    assert set(pc.unique(ext.drop_null()).to_pylist()) == {0.0, 1.0}
    assert set(pc.unique(objects["refBand"]).to_pylist()) <= set(BANDS)
    assert 0.9 < pc.mean(objects["detect_isPrimary"].cast(pa.float64())).as_py() < 1.0
    assert pc.min(objects["ebv"]).as_py() > 0


def test_sources_sample_the_survey(object_slice: pa.RecordBatch, sources: pa.RecordBatch) -> None:
    assert abs(sources.num_rows / object_slice.num_rows - 10.0) < 0.2
    tai = _np(sources, "midPointTai")
    assert tai.min() > 60_000 and tai.max() - tai.min() > 9 * 365
    assert set(pc.unique(sources["band"]).to_pylist()) == set(BANDS)
    # A detector image has one band and one time.
    per_visit = (
        pa.table({"v": sources["ccdVisitId"], "b": sources["band"], "t": sources["midPointTai"]})
        .group_by("v")
        .aggregate([("b", "count_distinct"), ("t", "count_distinct")])
    )
    assert pc.max(per_visit["b_count_distinct"]).as_py() == 1
    assert pc.max(per_visit["t_count_distinct"]).as_py() == 1
    # Bright objects: visit fluxes scatter around the coadd flux in that band.
    row_of = {oid: k for k, oid in enumerate(_np(object_slice, "objectId"))}
    owner = np.array([row_of[oid] for oid in _np(sources, "objectId")])
    band_index = np.array([BANDS.index(b) for b in _np(sources, "band")])
    coadd = np.column_stack([_np(object_slice, f"{b}_psfFlux") for b in BANDS])[owner, band_index]
    coadd_err = np.column_stack([_np(object_slice, f"{b}_psfFluxErr") for b in BANDS])[
        owner, band_index
    ]
    bright = coadd > 100 * coadd_err
    ratio = _np(sources, "psFlux")[bright] / coadd[bright]
    assert bright.sum() > 1_000 and abs(np.median(ratio) - 1) < 0.02


# --- errors -------------------------------------------------------------------


def test_progress_reports_slices_of_objects(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("qcat.demo.generator.SOURCE_SLICE_OBJECTS", 400)
    calls: list[int] = []
    files = write_demo_files(
        tmp_path, 2_500, mean_sources_per_object=1.0, rows_per_file=1_000, progress=calls.append
    )
    assert calls == [400, 400, 200, 400, 400, 200, 400, 100]
    assert sum(calls) == files.n_objects == 2_500


def test_bad_parameters_are_named(tmp_path: Path, object_slice: pa.RecordBatch) -> None:
    with pytest.raises(ConfigError, match="n_objects"):
        object_batches(0)
    with pytest.raises(ConfigError, match="batch_rows"):
        object_batches(10, batch_rows=0)
    with pytest.raises(ConfigError, match="seed"):
        object_batches(10, seed=-1)
    with pytest.raises(ConfigError, match="mean_per_object"):
        source_batches(object_slice, seed=1, first_source_id=1, mean_per_object=-1.0)
    with pytest.raises(ConfigError, match="first_source_id"):
        source_batches(object_slice, seed=1, first_source_id=-5)
    with pytest.raises(SchemaError, match="coord_ra"):
        source_batches(object_slice.drop_columns(["coord_ra"]), seed=1, first_source_id=1)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match=str(blocker)):
        write_demo_files(blocker, 10)
    with pytest.raises(ConfigError, match="rows_per_file"):
        write_demo_files(tmp_path / "out", 10, rows_per_file=0)
    empty = source_batches(object_slice, seed=1, first_source_id=1, mean_per_object=0.0)
    assert (
        empty.num_rows == 0
        and empty.schema
        == source_batches(object_slice.slice(0, 1), seed=1, first_source_id=1).schema
    )
