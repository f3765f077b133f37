"""Bad input gets a clear error naming the file, row or column, and loses nothing."""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from qcat.metadata.store import MetadataStore
from tests.conftest import DemoTables, RunQcat, make_demo
from tests.formats import write_as


@pytest.fixture
def published(tmp_path: Path, demo_small: DemoTables, run_qcat: RunQcat) -> Path:
    """A data directory with demo.Object and demo.Source published."""
    data = tmp_path / "data"
    obj = write_as(demo_small.objects.slice(0, 1000), tmp_path / "o.parquet", "parquet")
    keys = set(demo_small.objects["objectId"].slice(0, 1000).to_pylist())
    mask = pa.array([k in keys for k in demo_small.sources["objectId"].to_pylist()])
    src = write_as(demo_small.sources.filter(mask), tmp_path / "s.parquet", "parquet")
    common = ["--data", data, "--schema", demo_small.schema, "--quiet", "--threshold", "300"]
    run_qcat("ingest", *common, "--table", "demo.Object", obj)
    run_qcat("ingest", *common, "--table", "demo.Source", src)
    return data


def state(data: Path) -> tuple:
    store = MetadataStore.for_data_dir(data)
    try:
        return tuple(
            (t.name, v.version, v.num_rows, v.path)
            for t in store.tables()
            if (v := store.current_version(t.name)) is not None
        )
    finally:
        store.close()


def ingest_fails(
    run_qcat: RunQcat,
    data: Path,
    schema: Path,
    table: str,
    *files: Path,
    extra: tuple[str, ...] = (),
) -> str:
    before = state(data)
    proc = run_qcat(
        "ingest",
        "--data",
        data,
        "--schema",
        schema,
        "--table",
        table,
        "--quiet",
        *extra,
        *files,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert state(data) == before
    assert run_qcat("admin", "verify", "--data", data).returncode == 0
    assert not any((data / "staging").iterdir())
    return proc.stderr


def with_value(table: pa.Table, column: str, row: int, value: object) -> pa.Table:
    values = table[column].to_pylist()
    values[row] = value
    i = table.column_names.index(column)
    return table.set_column(i, column, pa.array(values, table.schema.field(column).type))


def new_objects(demo: DemoTables) -> pa.Table:
    return demo.objects.slice(1000, 500)


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [
        ("coord_ra", float("nan"), "coord_ra"),
        ("coord_dec", 91.5, "coord_dec"),
        ("coord_ra", -3.0, "coord_ra"),
    ],
)
def test_bad_positions_name_file_row_column(
    column: str,
    value: float,
    words: str,
    published: Path,
    tmp_path: Path,
    demo_small: DemoTables,
    run_qcat: RunQcat,
) -> None:
    bad = with_value(new_objects(demo_small), column, 123, value)
    f = write_as(bad, tmp_path / "bad.parquet", "parquet")
    err = ingest_fails(run_qcat, published, demo_small.schema, "demo.Object", f)
    assert "bad.parquet" in err and "row 123" in err and words in err


def test_non_numeric_position_in_csv(
    published: Path, tmp_path: Path, demo_small: DemoTables, run_qcat: RunQcat
) -> None:
    f = write_as(new_objects(demo_small), tmp_path / "bad.csv", "csv")
    lines = f.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[41].split(",")
    cells[header.index("coord_dec")] = "north"
    lines[41] = ",".join(cells)
    f.write_text("\n".join(lines) + "\n")
    err = ingest_fails(run_qcat, published, demo_small.schema, "demo.Object", f)
    assert "bad.csv" in err and "coord_dec" in err and "north" in err


def test_missing_position_column(
    published: Path, tmp_path: Path, demo_small: DemoTables, run_qcat: RunQcat
) -> None:
    f = write_as(
        new_objects(demo_small).drop_columns(["coord_dec"]), tmp_path / "m.parquet", "parquet"
    )
    err = ingest_fails(run_qcat, published, demo_small.schema, "demo.Object", f)
    assert "m.parquet" in err and "coord_dec" in err


def test_schema_disagreement(
    published: Path, tmp_path: Path, demo_small: DemoTables, run_qcat: RunQcat
) -> None:
    t = new_objects(demo_small)
    t = t.append_column("surprise", pa.array(np.zeros(t.num_rows)))
    f = write_as(t, tmp_path / "x.parquet", "parquet")
    err = ingest_fails(run_qcat, published, demo_small.schema, "demo.Object", f)
    assert "x.parquet" in err and "surprise" in err


def test_duplicate_director_keys_across_files_and_published(
    published: Path, tmp_path: Path, demo_small: DemoTables, run_qcat: RunQcat
) -> None:
    new = new_objects(demo_small)
    dup_of_published = with_value(new, "objectId", 7, demo_small.objects["objectId"][3].as_py())
    f1 = write_as(dup_of_published, tmp_path / "d1.parquet", "parquet")
    err = ingest_fails(run_qcat, published, demo_small.schema, "demo.Object", f1)
    assert "duplicate" in err and "d1.parquet row 7" in err and "published table" in err
    f2 = write_as(new_objects(demo_small).slice(0, 10), tmp_path / "d2.parquet", "parquet")
    f3 = write_as(new_objects(demo_small).slice(5, 10), tmp_path / "d3.parquet", "parquet")
    err = ingest_fails(run_qcat, published, demo_small.schema, "demo.Object", f2, f3)
    assert "5 duplicate" in err and "d3.parquet row 0" in err


def test_orphan_children_rejected_or_kept(
    published: Path, tmp_path: Path, demo_small: DemoTables, run_qcat: RunQcat
) -> None:
    src = demo_small.sources.slice(0, 200)
    ids = pc.add(src["objectId"], pa.scalar(10**17, pa.int64()))
    new_ids = pc.add(src["sourceId"], pa.scalar(10**17, pa.int64()))
    orphans = (
        src.slice(0, 20)
        .set_column(0, "sourceId", new_ids.slice(0, 20))
        .set_column(1, "objectId", ids.slice(0, 20))
    )
    f = write_as(orphans, tmp_path / "orph.parquet", "parquet")
    err = ingest_fails(run_qcat, published, demo_small.schema, "demo.Source", f)
    assert "20 row(s)" in err and "orph.parquet row 0" in err and "--orphans keep" in err
    before = state(published)
    run_qcat(
        "ingest",
        "--data",
        published,
        "--schema",
        demo_small.schema,
        "--table",
        "demo.Source",
        "--quiet",
        "--orphans",
        "keep",
        "--key-index",
        f,
    )
    after = dict((n, r) for n, _, r, _ in state(published))
    assert after["demo.Source"] == dict((n, r) for n, _, r, _ in before)["demo.Source"] + 20
    # Appending to the director re-places the child, keeping its orphans as before.
    objects = write_as(new_objects(demo_small), tmp_path / "more.parquet", "parquet")
    run_qcat(
        "ingest",
        "--data",
        published,
        "--schema",
        demo_small.schema,
        "--table",
        "demo.Object",
        "--quiet",
        objects,
    )
    rebuilt = dict((n, (v, r)) for n, v, r, _ in state(published))
    assert rebuilt["demo.Source"] == (3, after["demo.Source"])
    assert rebuilt["demo.Object"][1] == after["demo.Object"] + 500
    # The re-placed child keeps the key index asked for by the append before; it places
    # a kept orphan (in the chunk of its own position) and a director's source alike.
    for key, owner in ((new_ids[3].as_py(), ids[3].as_py()), (src["sourceId"][3].as_py(), None)):
        adql = f"SELECT sourceId, objectId FROM demo.Source WHERE sourceId = {key}"
        plan = run_qcat("adql", "explain", "--data", published, adql).stdout
        assert "index of sourceId maps 1 key(s) to 1 chunk(s)" in plan
        out = tmp_path / "one.csv"
        run_qcat("query", "--data", published, "-o", out, adql)
        owner = src["objectId"][3].as_py() if owner is None else owner
        assert out.read_text().split() == ["sourceId,objectId", f"{key},{owner}"]


def test_a_key_index_is_only_for_a_child_table(
    published: Path, tmp_path: Path, demo_small: DemoTables, run_qcat: RunQcat
) -> None:
    f = write_as(new_objects(demo_small), tmp_path / "more.parquet", "parquet")
    err = ingest_fails(
        run_qcat, published, demo_small.schema, "demo.Object", f, extra=("--key-index",)
    )
    assert "demo.Object" in err and "one-column primary key" in err and "director" in err


def test_a_published_child_gets_its_own_key_index_without_new_input(
    published: Path, tmp_path: Path, demo_small: DemoTables, run_qcat: RunQcat
) -> None:
    before = {n: (v, r) for n, v, r, _ in state(published)}
    key = demo_small.sources["sourceId"][17].as_py()
    adql = f"SELECT sourceId FROM demo.Source WHERE sourceId = {key}"
    explain = ("adql", "explain", "--data", published, adql)
    assert "index of sourceId" not in run_qcat(*explain).stdout
    done = run_qcat("ingest", "--data", published, "--table", "demo.Source", "--key-index")
    assert "its own key indexed (no new input; same rows)" in done.stderr
    after = {n: (v, r) for n, v, r, _ in state(published)}
    version, rows = before["demo.Source"]
    assert after["demo.Source"] == (version + 1, rows)
    assert after["demo.Object"] == before["demo.Object"]
    assert "index of sourceId maps 1 key(s) to 1 chunk(s)" in run_qcat(*explain).stdout
    out = tmp_path / "one.csv"
    run_qcat("query", "--data", published, "-o", out, adql)
    assert out.read_text().split() == ["sourceId", str(key)]
    again = run_qcat("ingest", "--data", published, "--table", "demo.Source", "--key-index")
    assert "nothing to do" in again.stderr
    assert {n: (v, r) for n, v, r, _ in state(published)} == after
    assert run_qcat("admin", "verify", "--data", published).returncode == 0
    # a table that does not exist yet cannot be indexed without FILES
    missing = run_qcat(
        "ingest", "--data", published, "--table", "demo.Nothing", "--key-index", check=False
    )
    assert missing.returncode == 1 and "demo.Nothing" in missing.stderr


def test_truncated_file(
    published: Path, tmp_path: Path, demo_small: DemoTables, run_qcat: RunQcat
) -> None:
    f = write_as(new_objects(demo_small), tmp_path / "cut.parquet", "parquet")
    raw = f.read_bytes()
    f.write_bytes(raw[: len(raw) // 2])
    err = ingest_fails(run_qcat, published, demo_small.schema, "demo.Object", f)
    assert "cut.parquet" in err


def test_missing_input_file(
    published: Path, tmp_path: Path, demo_small: DemoTables, run_qcat: RunQcat
) -> None:
    err = ingest_fails(
        run_qcat, published, demo_small.schema, "demo.Object", tmp_path / "nowhere.parquet"
    )
    assert "nowhere.parquet" in err and "not found" in err


def test_negative_row_group_rows_is_refused(
    published: Path, demo_small: DemoTables, run_qcat: RunQcat, tmp_path: Path
) -> None:
    source = tmp_path / "objects.parquet"
    pq.write_table(new_objects(demo_small), source)
    before = state(published)
    proc = run_qcat(
        "ingest", "--data", published, "--schema", demo_small.schema, "--table", "demo.Object",
        "--row-group-rows", "-1", source, check=False,
    )  # fmt: skip
    assert proc.returncode == 2  # a usage error, refused before anything starts
    assert "--row-group-rows" in proc.stderr and "-1" in proc.stderr
    assert state(published) == before


def test_write_error_while_writing(tmp_path: Path, run_qcat: RunQcat) -> None:
    """A write that the OS refuses (file size limit, as on a full disk) fails cleanly."""
    # One partition per table, so the rebuilt child file is far larger than the
    # metadata database: the limit then lets the database work and stops the data.
    demo = make_demo(6000)
    data = tmp_path / "data"
    obj = write_as(demo.objects.slice(0, 5000), tmp_path / "o.parquet", "parquet")
    keys = set(demo.objects["objectId"].slice(0, 5000).to_pylist())
    mask = pa.array([k in keys for k in demo.sources["objectId"].to_pylist()])
    src = write_as(demo.sources.filter(mask), tmp_path / "s.parquet", "parquet")
    common = ["--data", data, "--schema", demo.schema, "--quiet"]
    run_qcat("ingest", *common, "--table", "demo.Object", obj)
    run_qcat("ingest", *common, "--table", "demo.Source", src)
    limit = (data / "qcat.sqlite").stat().st_size + 128 * 1024
    largest_source_file = max(p.stat().st_size for p in (data / "tables").rglob("Npix=*.parquet"))
    assert largest_source_file > limit, "test data too small to trip the file size limit"
    f = write_as(demo.objects.slice(5000, 500), tmp_path / "ok.parquet", "parquet")

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    before = state(data)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "qcat",
            "ingest",
            *map(str, common),
            "--table",
            "demo.Object",
            str(f),
        ],
        capture_output=True,
        text=True,
        preexec_fn=limit_file_size,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    assert "File too large" in proc.stderr
    assert "unchanged" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert state(data) == before
    assert run_qcat("admin", "verify", "--data", data).returncode == 0
    assert not any((data / "staging").iterdir())


def _drop_root_file_override() -> None:
    """Make permission bits bind in the child even when the tests run as root.

    Drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the capability
    bounding set, so the process ``exec`` starts lacks them.
    """
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2
    for cap in (cap_dac_override, cap_dac_read_search):
        if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_permission_error_rolls_back_director_and_children(
    published: Path, tmp_path: Path, demo_small: DemoTables
) -> None:
    """The director builds, its child cannot be written: neither is published."""
    f = write_as(new_objects(demo_small), tmp_path / "ok.parquet", "parquet")
    source_dir = published / "tables" / "demo.source"
    versions_before = {p.name for p in (published / "tables").glob("*/*")}
    before = state(published)
    source_dir.chmod(0o555)
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "qcat",
                "ingest",
                "--data",
                str(published),
                "--schema",
                str(demo_small.schema),
                "--table",
                "demo.Object",
                "--quiet",
                str(f),
            ],
            capture_output=True,
            text=True,
            preexec_fn=_drop_root_file_override,
            timeout=300,
        )
    finally:
        source_dir.chmod(0o755)
    assert proc.returncode == 1, proc.stderr
    assert "Permission denied" in proc.stderr and "demo.source" in proc.stderr
    assert "unchanged" in proc.stderr and "Traceback" not in proc.stderr
    assert state(published) == before
    assert {p.name for p in (published / "tables").glob("*/*")} == versions_before
    assert not any((published / "staging").iterdir())
    verify = subprocess.run(
        [sys.executable, "-m", "qcat", "admin", "verify", "--data", str(published)],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_null_director_key_names_file_and_row(
    fmt: str, published: Path, tmp_path: Path, demo_small: DemoTables, run_qcat: RunQcat
) -> None:
    """Parquet children are read in place, other formats staged: both check NULL keys."""
    src = demo_small.sources.slice(0, 50)
    src = src.set_column(0, "sourceId", pc.add(src["sourceId"], pa.scalar(10**17, pa.int64())))
    keys = src["objectId"].to_pylist()
    keys[37] = None
    src = src.set_column(1, pa.field("objectId", pa.int64()), pa.array(keys, pa.int64()))
    f = write_as(src, tmp_path / f"nullkey.{fmt}", fmt)
    err = ingest_fails(run_qcat, published, demo_small.schema, "demo.Source", f)
    assert f"nullkey.{fmt}" in err and "row 37" in err and "objectId" in err


@pytest.mark.parametrize("slice_rows", [16_000_000, 97])
def test_duplicate_check_finds_every_duplicate_in_hash_slices(
    slice_rows: int, tmp_path: Path, demo_small: DemoTables
) -> None:
    """Large tables check keys slice by slice; the answer must not depend on the slicing."""
    from partition.ingest import IngestOptions, ingest_table
    from qcat.errors import IngestError

    objects = demo_small.objects.slice(0, 1000)
    keys = objects["objectId"].to_pylist()
    for i in range(0, 1000, 50):  # 20 keys, each repeated once further on
        keys[i + 25] = keys[i]
    f = write_as(
        objects.set_column(0, "objectId", pa.array(keys, pa.int64())),
        tmp_path / "d.parquet",
        "parquet",
    )
    options = IngestOptions(key_slice_rows=slice_rows, show_progress=False)
    with pytest.raises(IngestError, match="20 duplicate value"):
        ingest_table(tmp_path / "data", demo_small.object_spec, [f], options)


def test_groups_of_kept_orphans_are_merged_across_chunks(
    published: Path, tmp_path: Path, demo_small: DemoTables, run_qcat: RunQcat
) -> None:
    """Orphans sharing one dangling key sit where their own positions are, in several
    chunks: grouping by the key must still give one group (not one per chunk)."""
    sources = demo_small.sources
    spread = sources.take(np.linspace(0, len(sources) - 1, 40).astype(int))
    dangling = pa.array([10**17 + 1] * len(spread), pa.int64())
    new_ids = pc.add(spread["sourceId"], pa.scalar(10**17, pa.int64()))
    orphans = spread.set_column(0, "sourceId", new_ids).set_column(1, "objectId", dangling)
    f = write_as(orphans, tmp_path / "orph.parquet", "parquet")
    common = ["--data", published, "--schema", demo_small.schema, "--quiet"]
    run_qcat("ingest", *common, "--table", "demo.Source", "--orphans", "keep", f)
    adql = (
        "SELECT objectId, COUNT(*) AS n FROM demo.Source WHERE objectId > 100000000000000000 "
        "GROUP BY objectId"
    )
    out = tmp_path / "groups.csv"
    run_qcat("query", "--data", published, "-o", out, adql)
    assert out.read_text().split() == ["objectId,n", f"{10**17 + 1},{len(spread)}"]
    plan = run_qcat("adql", "explain", "--data", published, adql).stdout
    assert "grouped by a key" not in plan
    # The orphans really are in several chunks, or this would prove nothing.
    where = run_qcat(
        "adql", "explain", "--data", published,
        "SELECT COUNT(*) FROM demo.Source WHERE objectId > 100000000000000000",
    ).stdout  # fmt: skip
    assert "1 chunk task" not in where
