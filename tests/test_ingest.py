"""End-to-end ingest through the CLI: round trips, layout, transactions."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import hats
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from partition.director_index import DirectorIndex
from partition.healpix import radec_to_healpix29
from partition.layout import Partition
from qcat.metadata.store import MetadataStore
from tests.conftest import DemoTables, RunQcat, make_demo
from tests.formats import write_as

THRESHOLD = "400"  # tiny partitions: many chunk boundaries even in small data


def read_table(data_dir: Path, name: str) -> pa.Table:
    """Every row of the current version of ``name``, from its partition files."""
    store = MetadataStore.for_data_dir(data_dir)
    try:
        files = [data_dir / p.path for p in store.partitions(name)]
    finally:
        store.close()
    return pa.concat_tables(pq.read_table(f) for f in files)


def current(data_dir: Path, name: str):  # type: ignore[no-untyped-def]
    store = MetadataStore.for_data_dir(data_dir)
    try:
        return store.current_version(name), store.partitions(name)
    finally:
        store.close()


def ingest_demo(run_qcat: RunQcat, data: Path, demo: DemoTables, fmt: str, tmp: Path) -> None:
    obj = write_as(demo.objects, tmp / f"objects.{fmt}", fmt)
    src = write_as(demo.sources, tmp / f"sources.{fmt}", fmt)
    common = ["--data", data, "--schema", demo.schema, "--threshold", THRESHOLD, "--quiet"]
    run_qcat("ingest", *common, "--table", "demo.Object", obj)
    run_qcat("ingest", *common, "--table", "demo.Source", src)


def sorted_by(table: pa.Table, key: str) -> pa.Table:
    return table.sort_by(key)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "fits", "votable"])
def test_round_trip_every_format(
    fmt: str, tmp_path: Path, demo_small: DemoTables, run_qcat: RunQcat
) -> None:
    data = tmp_path / "data"
    ingest_demo(run_qcat, data, demo_small, fmt, tmp_path)
    for name, original, key in (
        ("demo.Object", demo_small.objects, "objectId"),
        ("demo.Source", demo_small.sources, "sourceId"),
    ):
        back = read_table(data, name)
        assert back.num_rows == original.num_rows
        assert pc.count_distinct(back[key]).as_py() == original.num_rows
        got = sorted_by(back.drop_columns(["_healpix_29"]), key)
        want = sorted_by(original, key).cast(got.schema)
        for col in want.column_names:
            assert got[col].equals(want[col]), f"{fmt}: {name}.{col} differs"


def test_layout_index_margins_and_hats(
    tmp_path: Path, demo_small: DemoTables, run_qcat: RunQcat
) -> None:
    data = tmp_path / "data"
    ingest_demo(run_qcat, data, demo_small, "parquet", tmp_path)
    version, parts = current(data, "demo.Object")
    assert version is not None and len(parts) > 10
    assert len({p.order for p in parts}) > 1, "dense and sparse sky give mixed orders"

    # every row sits in the partition its own _healpix_29 says, sorted, row groups bounded
    obj_chunk: dict[int, Partition] = {}
    for p in parts:
        t = pq.read_table(data / p.path)
        h = t["_healpix_29"].to_numpy()
        assert np.all(np.diff(h) >= 0)
        part = Partition(p.order, p.pixel)
        assert np.all((h >= part.lo29) & (h < part.hi29))
        want = radec_to_healpix29(t["coord_ra"].to_numpy(), t["coord_dec"].to_numpy())
        assert np.array_equal(h, want)
        for k in t["objectId"].to_pylist():
            obj_chunk[k] = part
        assert p.num_rows == t.num_rows <= int(THRESHOLD) or p.order == 10

    # child rows land in their director's chunk
    _, src_parts = current(data, "demo.Source")
    for p in src_parts:
        t = pq.read_table(data / p.path, columns=["objectId"])
        chunks = {obj_chunk[k] for k in t["objectId"].to_pylist()}
        assert chunks == {Partition(p.order, p.pixel)}

    # the director index finds every key, reading one row group per lookup
    index = DirectorIndex(data / version.index_path)
    found = index.lookup(list(obj_chunk))
    assert found == obj_chunk
    before = index.row_groups_read
    assert index.lookup_one(next(iter(obj_chunk))) is not None
    assert index.row_groups_read - before == 1
    assert index.lookup_one(-5) is None

    # HATS readers open the catalog and its margin
    cat = hats.read_hats(data / version.path / "catalog")
    assert len(cat.get_healpix_pixels()) == len(parts)
    margin = hats.read_hats(data / version.margin_path)
    assert margin.catalog_info.margin_threshold == 60.0
    n = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{data / version.path}/catalog/dataset/**/*.parquet')"
    ).fetchall()
    assert n == [(demo_small.objects.num_rows,)]


def _arc_distance_deg(ra1, dec1, ra2, dec2):  # type: ignore[no-untyped-def]
    """Haversine great-circle distance, degrees."""
    r1, d1, r2, d2 = map(np.radians, (ra1, dec1, ra2, dec2))
    a = np.sin((d2 - d1) / 2) ** 2 + np.cos(d1) * np.cos(d2) * np.sin((r2 - r1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(a, 0, 1))))


def test_margin_rows_match_brute_force(tmp_path: Path, run_qcat: RunQcat) -> None:
    """Margins of a real ingest equal a brute-force angular computation.

    The catalog is built to stress the hard places: clusters at both poles
    and across RA=0/360. The brute force measures each row's distance to
    each partition with densely sampled pixel boundaries (healpy), an
    independent method; rows within 0.5 arcsec of the width are ambiguous at
    that sampling and left out of the comparison.
    """
    import healpy as hp

    rng = np.random.default_rng(3)
    n = 6000
    ra = np.concatenate(
        [rng.uniform(0, 360, n // 3), rng.normal(0, 1.0, n // 3) % 360, rng.uniform(0, 360, n // 3)]
    )
    dec = np.concatenate(
        [rng.uniform(85, 90, n // 3), rng.uniform(-5, 5, n // 3), rng.uniform(-90, -85, n // 3)]
    )
    table = pa.table({"id": np.arange(n, dtype=np.int64), "ra": ra, "dec": dec})
    inp = write_as(table, tmp_path / "pts.parquet", "parquet")
    data = tmp_path / "data"
    width = 900.0  # arcsec
    run_qcat(
        "ingest",
        "--data",
        data,
        "--table",
        "t.pts",
        "--key",
        "id",
        "--threshold",
        "300",
        "--margin-arcsec",
        str(width),
        "--quiet",
        inp,
    )
    version, parts = current(data, "t.pts")
    margin_dir = data / version.margin_path / "dataset"
    steps = 400
    checked = 0
    for p in parts:
        part = Partition(p.order, p.pixel)
        f = margin_dir / part.path
        got = set(pq.read_table(f)["id"].to_pylist()) if f.exists() else set()
        lon, lat = hp.vec2ang(
            hp.boundaries(2**p.order, p.pixel, step=steps, nest=True).T, lonlat=True
        )
        h = radec_to_healpix29(ra, dec)
        outside = (h < part.lo29) | (h >= part.hi29)
        dist = np.full(n, np.inf)
        for lo, la in zip(lon, lat, strict=True):
            dist = np.minimum(dist, _arc_distance_deg(ra, dec, lo, la) * 3600)
        clear_in = outside & (dist <= width - 0.5)
        clear_out = outside & (dist > width + 0.5)
        ids = table["id"].to_numpy()
        assert set(ids[clear_in]) <= got, f"{part}: margin rows missing"
        assert not (set(ids[clear_out]) & got), f"{part}: rows beyond the margin"
        assert not (set(ids[~outside]) & got), f"{part}: own rows in its margin"
        checked += int(clear_in.sum())
    assert checked > 500


def test_rerun_is_idempotent_and_append_adds(
    tmp_path: Path, demo_small: DemoTables, run_qcat: RunQcat
) -> None:
    data = tmp_path / "data"
    half = demo_small.objects.num_rows // 2
    a = write_as(demo_small.objects.slice(0, half), tmp_path / "a.parquet", "parquet")
    b = write_as(demo_small.objects.slice(half), tmp_path / "b.csv", "csv")
    args = [
        "ingest",
        "--data",
        data,
        "--schema",
        demo_small.schema,
        "--table",
        "demo.Object",
        "--threshold",
        THRESHOLD,
        "--quiet",
    ]
    run_qcat(*args, a)
    v1, _ = current(data, "demo.Object")
    again = run_qcat(*args, a)
    assert "already ingested" in again.stderr
    v1b, _ = current(data, "demo.Object")
    assert (v1b.version, v1b.num_rows) == (v1.version, half)
    run_qcat(*args, a, b)  # a is skipped, b appended
    v2, _ = current(data, "demo.Object")
    assert v2.version == v1.version + 1
    back = read_table(data, "demo.Object")
    assert sorted(back["objectId"].to_pylist()) == sorted(
        demo_small.objects["objectId"].to_pylist()
    )
    assert run_qcat("admin", "verify", "--data", data).returncode == 0


def test_verify_detects_corruption_and_missing_files(
    tmp_path: Path, demo_small: DemoTables, run_qcat: RunQcat
) -> None:
    data = tmp_path / "data"
    ingest_demo(run_qcat, data, demo_small, "parquet", tmp_path)
    ok = run_qcat("admin", "verify", "--data", data)
    assert " 0 problem(s)" in ok.stdout
    _, parts = current(data, "demo.Object")
    victim = data / parts[3].path
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    victim.write_bytes(bytes(raw))
    gone = data / parts[5].path
    gone.unlink()
    bad = run_qcat("admin", "verify", "--data", data, check=False)
    assert bad.returncode == 1
    assert f"{parts[3].path}: checksum" in bad.stdout
    assert f"{parts[5].path}: missing" in bad.stdout


def _published_state(data: Path) -> tuple:
    store = MetadataStore.for_data_dir(data)
    try:
        return tuple(
            (t.name, v.version, v.num_rows)
            for t in store.tables()
            if (v := store.current_version(t.name)) is not None
        )
    finally:
        store.close()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_ingest_leaves_published_state(
    sig: signal.Signals, tmp_path: Path, demo_small: DemoTables, run_qcat: RunQcat
) -> None:
    data = tmp_path / "data"
    ingest_demo(run_qcat, data, demo_small, "parquet", tmp_path)
    before = _published_state(data)
    big = make_demo(160_000, seed=11)
    shifted = big.objects.set_column(0, "objectId", pc.add(big.objects["objectId"], 10**15))
    # Several inputs are staged one after the other: the signal arrives after the
    # first is staged, with most of the work still to do.
    big_files = [
        write_as(shifted.slice(i * 20_000, 20_000), tmp_path / f"big-{i}.parquet", "parquet")
        for i in range(8)
    ]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qcat",
            "ingest",
            "--data",
            str(data),
            "--schema",
            str(big.schema),
            "--table",
            "demo.Object",
            "--quiet",
            "--threshold",
            "2000",
            *map(str, big_files),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Test runners' worker processes may ignore SIGINT, and children inherit
        # that; an operator's shell does not, so give the ingest the default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    staging = data / "staging"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if staging.is_dir() and any(staging.rglob("*.parquet")):
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    if sig == signal.SIGINT:
        assert "unchanged" in err
    assert _published_state(data) == before
    assert run_qcat("admin", "verify", "--data", data).returncode == 0
    back = read_table(data, "demo.Object")
    assert back.num_rows == demo_small.objects.num_rows
    # the next ingest cleans up what was left and succeeds
    run_qcat(
        "ingest",
        "--data",
        data,
        "--schema",
        big.schema,
        "--table",
        "demo.Object",
        "--quiet",
        "--threshold",
        "2000",
        *big_files,
    )
    assert not any(staging.iterdir())
    v, _ = current(data, "demo.Object")
    assert v.num_rows == demo_small.objects.num_rows + big.objects.num_rows
    tables_dir = data / "tables" / "demo.object"
    assert len(list(tables_dir.iterdir())) <= 2  # current + one previous version kept


def test_attach_existing_hats_catalog(
    tmp_path: Path, demo_small: DemoTables, run_qcat: RunQcat
) -> None:
    data = tmp_path / "data"
    ingest_demo(run_qcat, data, demo_small, "parquet", tmp_path)
    version, parts = current(data, "demo.Object")
    external = tmp_path / "archive" / "object_hats"
    shutil.copytree(data / version.path / "catalog", external)
    before = {p: p.stat().st_mtime_ns for p in external.rglob("*")}
    out = run_qcat(
        "ingest",
        "--data",
        tmp_path / "d2",
        "--attach",
        external,
        "--table",
        "arch.obj",
        "--key",
        "objectId",
    )
    assert "arch.obj" in out.stdout
    assert {p: p.stat().st_mtime_ns for p in external.rglob("*")} == before
    v2, parts2 = current(tmp_path / "d2", "arch.obj")
    assert v2.num_rows == demo_small.objects.num_rows
    assert [(p.order, p.pixel) for p in parts2] == [(p.order, p.pixel) for p in parts]
    idx = DirectorIndex(tmp_path / "d2" / v2.index_path)
    k = demo_small.objects["objectId"][17].as_py()
    assert idx.lookup_one(k) is not None
    assert run_qcat("admin", "verify", "--data", tmp_path / "d2").returncode == 0
    # Queried in place (tests/test_attached_catalogs.py checks the answers in depth).
    counted = run_qcat(
        "query", "--data", tmp_path / "d2", "-o", tmp_path / "n.csv",
        f"SELECT COUNT(*) AS n, MAX(objectId) AS highest FROM arch.obj WHERE objectId <= {k}",
    )  # fmt: skip
    assert counted.returncode == 0
    want = pc.sum(pc.less_equal(demo_small.objects["objectId"], k)).as_py()
    assert (tmp_path / "n.csv").read_text().split() == ["n,highest", f"{want},{k}"]
    (external / "dataset" / Partition(parts[0].order, parts[0].pixel).path).unlink()
    assert run_qcat("admin", "verify", "--data", tmp_path / "d2", check=False).returncode == 1
