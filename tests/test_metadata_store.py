"""The metadata store: migrations, publishing transactions, reading back."""

from __future__ import annotations

import hashlib
import multiprocessing
import random
import subprocess
import sys
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, MetaData, String, func, inspect, select, text

from qcat.errors import ConfigError, IngestError, NotFoundError, SchemaError
from qcat.metadata import migrate
from qcat.metadata.records import FileRecord, InputFileRecord, PartitionRecord
from qcat.metadata.store import METADATA_URL_ENV, SQLITE_FILE_NAME, MetadataStore
from qcat.metadata.tables import (
    catalog_column,
    catalog_table,
    metadata,
    table_version,
    version_file,
    version_partition,
)
from qcat.schema import ColumnSpec, TableSpec


@pytest.fixture(autouse=True)
def _no_metadata_url(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's own metadata database must never be touched by the tests.
    monkeypatch.delenv(METADATA_URL_ENV, raising=False)


@pytest.fixture
def store(tmp_path: Path):
    with MetadataStore.for_data_dir(tmp_path / "data") as s:
        yield s


def make_spec(name: str = "demo.Object", *, extra: bool = False) -> TableSpec:
    schema_name, _, table = name.partition(".")
    columns = [
        ColumnSpec("objectId", "long", nullable=False, description="Unique id", principal=True),
        ColumnSpec("ra", "double", unit="deg", ucd="pos.eq.ra;meta.main", principal=True),
        ColumnSpec("dec", "double", unit="deg", ucd="pos.eq.dec;meta.main", principal=True),
        ColumnSpec("band", "char", length=1, description="Filter"),
    ]
    if extra:
        columns.append(ColumnSpec("flux", "float", unit="nJy", ucd="phot.flux"))
    return TableSpec(
        schema_name=schema_name,
        name=table,
        columns=tuple(columns),
        description="Objects",
        primary_key=("objectId",),
        ra_column="ra",
        dec_column="dec",
        notes=("not stored",),
    )


def sha(text_: str) -> str:
    return hashlib.sha256(text_.encode()).hexdigest()


def inputs_named(*names: str) -> list[InputFileRecord]:
    return [InputFileRecord(f"in/{n}.parquet", 100 + i, sha(n)) for i, n in enumerate(names)]


def partitions_of(version: int) -> list[PartitionRecord]:
    return [
        PartitionRecord(1, 5, 10 * version, "Norder=1/Dir=0/Npix=5.parquet", {"ra": [1.5, 2.0]}),
        PartitionRecord(0, 0, 7, "Norder=0/Dir=0/Npix=0.parquet", {"band": ["g", "r"]}),
    ]


def files_of(version_path: str) -> list[FileRecord]:
    return [
        FileRecord(f"{version_path}/dataset/Norder=0/Dir=0/Npix=0.parquet", 11, sha("a"), "data"),
        FileRecord(f"{version_path}/margin/Npix=0.parquet", 12, sha("m"), "margin"),
        FileRecord(f"{version_path}/hats.properties", 13, sha("p"), "metadata"),
    ]


def publish(
    store: MetadataStore,
    spec: TableSpec,
    *,
    operation: str = "ingest",
    inputs: list[InputFileRecord] | None = None,
    tag: str = "v",
    partitions: list[PartitionRecord] | None = None,
    expected_current: int | None = None,
):
    ingest_id = store.begin_ingest(
        spec.qualified_name, operation, inputs or [], f"staging/{tag}", pid=1234
    )
    path = f"tables/{spec.qualified_name.lower()}/{tag}"
    return store.commit_version(
        ingest_id,
        spec,
        path=path,
        num_rows=17,
        partitions=partitions_of(1) if partitions is None else partitions,
        files=files_of(path),
        margin_path=f"{path}/margin",
        margin_arcsec=10.0,
        index_path=f"{path}/index",
        properties={"tag": tag},
        expected_current=expected_current,
    )


def snapshot(store: MetadataStore) -> dict[str, Any]:
    """Everything a reader can see, for before/after comparisons."""
    with store.engine.connect() as conn:
        counts = {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar()
            for t in metadata.sorted_tables
        }
    return {
        "tables": store.tables(),
        "versions": {t.name: store.versions(t.name) for t in store.tables()},
        "ingests": store.ingests(),
        "files": store.files(),
        "live": store.live_paths(),
        "counts": counts,
    }


# -- migrations ----------------------------------------------------------------


def test_fresh_store_is_migrated_to_head(tmp_path: Path) -> None:
    data = tmp_path / "new" / "data"
    with MetadataStore.for_data_dir(data) as store, store.engine.connect() as conn:
        assert (data / SQLITE_FILE_NAME).is_file()
        assert migrate.current_revision(conn) == migrate.head_revision()
        assert set(metadata.tables) <= set(inspect(conn).get_table_names())


def test_reopening_runs_no_migration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with MetadataStore.for_data_dir(tmp_path / "a") as store:
        publish(store, make_spec())

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("migration attempted")

    monkeypatch.setattr(command, "upgrade", refuse)
    with MetadataStore.for_data_dir(tmp_path / "a") as store:
        assert store.table("demo.Object").current_version == 1
    # The patch does catch migrations: a fresh store needs one.
    with pytest.raises(AssertionError, match="migration attempted"):
        MetadataStore.for_data_dir(tmp_path / "b")


def test_change_count_moves_with_commits_of_others(tmp_path: Path) -> None:
    with (
        MetadataStore.for_data_dir(tmp_path) as reader,
        MetadataStore.for_data_dir(tmp_path) as writer,
    ):
        first = reader.change_count()
        assert first is not None
        reader.tables()
        assert reader.change_count() == first  # reading changes nothing
        publish(writer, make_spec())
        second = reader.change_count()
        assert second != first
        assert reader.change_count() == second
    with MetadataStore("sqlite://") as memory:
        assert memory.change_count() is None  # cannot tell: callers read again


def test_head_revision_is_the_newest_migration() -> None:
    assert migrate.head_revision() == migrate.HEAD_REVISION


def test_opening_a_current_store_does_not_import_alembic(tmp_path: Path) -> None:
    MetadataStore.for_data_dir(tmp_path).close()  # created and migrated
    probe = (
        "import sys; from qcat.metadata.store import MetadataStore; "
        f"MetadataStore.for_data_dir({str(tmp_path)!r}).close(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_migrations_produce_the_table_definitions(store: MetadataStore) -> None:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []

        # The comparison sees real differences.
        changed = MetaData(naming_convention=metadata.naming_convention)
        for table in metadata.tables.values():
            table.to_metadata(changed)
        changed.tables["ingest"].append_column(Column("host", String(255)))
        diffs = compare_metadata(context, changed)
        assert [d[0] for d in diffs] == ["add_column"]

    # Alembic's own check, through the environment's URL path.
    config = migrate.alembic_config()
    config.set_main_option("sqlalchemy.url", store.engine.url.render_as_string())
    command.check(config)


def test_migrations_render_for_postgresql() -> None:
    sql = migrate.upgrade_sql("postgresql://qcat@db.example/qcat")
    for table in metadata.tables:
        assert f"CREATE TABLE {table} (" in sql
    assert "TIMESTAMP WITH TIME ZONE" in sql
    assert "id SERIAL NOT NULL" in sql
    assert "ON UPDATE CASCADE" in sql
    assert "INSERT INTO alembic_version (version_num) VALUES ('0001')" in sql


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(store: MetadataStore) -> None:
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 60_000


def test_schema_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    with MetadataStore.for_data_dir(tmp_path) as store, store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(ConfigError, match=r"'9999'.*upgrade qcat"):
        MetadataStore.for_data_dir(tmp_path)


def test_unusable_urls_raise_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no-such-dir"):
        MetadataStore(f"sqlite:///{tmp_path}/no-such-dir/x.sqlite")
    with pytest.raises(ConfigError, match="not a url"):
        MetadataStore("not a url")


def test_for_data_dir_honours_metadata_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere.sqlite"
    monkeypatch.setenv(METADATA_URL_ENV, f"sqlite:///{elsewhere}")
    with MetadataStore.for_data_dir(tmp_path / "data") as store:
        publish(store, make_spec())
    assert elsewhere.is_file()
    assert not (tmp_path / "data" / SQLITE_FILE_NAME).exists()


# -- publishing ----------------------------------------------------------------


def test_commit_round_trip(store: MetadataStore) -> None:
    spec = make_spec()
    before = datetime.now(UTC)
    inputs = inputs_named("a", "b")
    ingest_id = store.begin_ingest("demo.Object", "ingest", inputs, "staging/x", pid=42)
    parts = partitions_of(1)
    files = files_of("tables/demo.object/x")
    version = store.commit_version(
        ingest_id,
        spec,
        path="tables/demo.object/x",
        num_rows=17,
        partitions=parts,
        files=files,
        margin_path="tables/demo.object/x/margin",
        margin_arcsec=30.0,
        index_path=None,
        attached=False,
        properties={"hats_max_rows": 1000, "origin": "test"},
    )
    after = datetime.now(UTC)

    assert version.table == "demo.Object"
    assert version.version == 1
    assert version.path == "tables/demo.object/x"
    assert before <= version.created_at <= after
    assert (version.num_rows, version.num_partitions) == (17, 2)
    assert (version.margin_path, version.margin_arcsec) == ("tables/demo.object/x/margin", 30.0)
    assert version.index_path is None and version.attached is False
    assert version.properties == {"hats_max_rows": 1000, "origin": "test"}
    assert store.current_version("demo.Object") == version
    assert store.versions("demo.Object") == [version]

    table = store.table("demo.Object")
    assert table.spec == spec
    assert table.spec.to_dict() == spec.to_dict()  # notes too
    assert (table.name, table.kind, table.current_version) == ("demo.Object", "director", 1)
    assert before <= table.created_at <= after
    assert store.tables() == [table]

    # Partitions come back in _healpix_29 order, files in path order.
    assert store.partitions("demo.Object") == [parts[1], parts[0]]
    assert store.files("demo.Object") == sorted(files, key=lambda f: f.path)

    (record,) = store.ingests()
    assert (record.id, record.table, record.operation, record.status) == (
        ingest_id,
        "demo.Object",
        "ingest",
        "committed",
    )
    assert (record.staging_path, record.pid, record.version) == ("staging/x", 42, 1)
    assert record.inputs == inputs
    assert record.finished_at is not None
    assert before <= record.started_at <= record.finished_at <= after

    with store.engine.connect() as conn:
        rows = conn.execute(select(catalog_column).order_by(catalog_column.c.ordinal)).all()
    assert [(r.table_name, r.ordinal, r.name) for r in rows] == [
        ("demo.Object", i, c.name) for i, c in enumerate(spec.columns)
    ]
    for row, column in zip(rows, spec.columns, strict=True):
        assert (
            row.datatype,
            row.nullable,
            row.description,
            row.unit,
            row.ucd,
            row.length,
            row.principal,
        ) == (
            column.datatype,
            column.nullable,
            column.description,
            column.unit,
            column.ucd,
            column.length,
            column.principal,
        )


def test_partitions_are_ordered_by_healpix29_start(store: MetadataStore) -> None:
    def first_order29_index(order: int, pixel: int) -> int:
        # Descend to the first child 29 - order times (NESTED children are 4p..4p+3).
        for _ in range(29 - order):
            pixel *= 4
        return pixel

    pixels = [
        (0, 11),
        (3, 5),
        (2, 0),
        (1, 1),
        (7, 3),
        (7, 2),
        (5, 900),
        (0, 3),
        (10, 12 * 4**10 - 1),
    ]
    parts = [PartitionRecord(k, p, 1, f"Norder={k}/Npix={p}", {}) for k, p in pixels]
    random.Random(3).shuffle(parts)
    publish(store, make_spec(), partitions=parts)
    expected = sorted(parts, key=lambda p: first_order29_index(p.order, p.pixel))
    assert store.partitions("demo.Object") == expected
    assert store.partitions("demo.Object")[-1].pixel == 12 * 4**10 - 1  # fits 64 bits


def test_versions_increment_and_old_versions_stay_readable(store: MetadataStore) -> None:
    spec = make_spec()
    for n in (1, 2, 3):
        version = publish(
            store,
            spec,
            operation="append" if n > 1 else "ingest",
            tag=f"v{n}",
            partitions=partitions_of(n),
        )
        assert version.version == n
        assert store.table("demo.Object").current_version == n
    assert [v.version for v in store.versions("demo.Object")] == [1, 2, 3]
    assert [v.path for v in store.versions("demo.Object")] == [
        "tables/demo.object/v1",
        "tables/demo.object/v2",
        "tables/demo.object/v3",
    ]
    assert [p.num_rows for p in store.partitions("demo.Object", 1)] == [7, 10]
    assert [p.num_rows for p in store.partitions("demo.Object")] == [7, 30]
    assert {f.path.split("/")[2] for f in store.files("demo.Object", 2)} == {"v2"}
    with pytest.raises(NotFoundError, match=r"demo\.Object has no version 9"):
        store.partitions("demo.Object", 9)


def test_failed_ingest_leaves_the_current_version(store: MetadataStore) -> None:
    spec = make_spec()
    first = publish(store, spec, tag="v1")
    ingest_id = store.begin_ingest("demo.Object", "append", inputs_named("c"), "staging/2", 7)
    assert "staging/2" in store.live_paths()

    store.fail_ingest(ingest_id, "input row 3: bad ra")
    assert store.current_version("demo.Object") == first
    failed = store.ingests(status="failed")
    assert [(r.id, r.message, r.version) for r in failed] == [
        (ingest_id, "input row 3: bad ra", None)
    ]
    assert failed[0].finished_at is not None
    assert "staging/2" not in store.live_paths()

    with pytest.raises(IngestError, match=f"ingest {ingest_id} .* is failed"):
        store.commit_version(
            ingest_id,
            spec,
            path="p",
            num_rows=0,
            partitions=[],
            files=[],
            margin_path=None,
            margin_arcsec=None,
            index_path=None,
        )
    with pytest.raises(IngestError, match="only a running ingest can fail"):
        store.fail_ingest(ingest_id, "again")

    store.mark_cleaned(ingest_id)
    (cleaned,) = store.ingests(status="cleaned")
    assert (cleaned.id, cleaned.finished_at) == (ingest_id, failed[0].finished_at)
    assert store.versions("demo.Object") == [first]
    with pytest.raises(IngestError, match="committed"):
        store.mark_cleaned(store.ingests(status="committed")[0].id)
    with pytest.raises(NotFoundError, match="no ingest with id 999"):
        store.fail_ingest(999, "x")


def test_expected_current_mismatch_raises_and_changes_nothing(store: MetadataStore) -> None:
    spec = make_spec()
    publish(store, spec, tag="v1", expected_current=0)  # 0: the table must be new
    slow = store.begin_ingest("demo.Object", "append", inputs_named("slow"), "staging/slow", 1)
    publish(store, spec, operation="append", tag="v2", expected_current=1)

    before = snapshot(store)
    with pytest.raises(IngestError, match=r"table demo\.Object changed during ingest"):
        store.commit_version(
            slow,
            make_spec(extra=True),
            path="tables/demo.object/slow",
            num_rows=1,
            partitions=partitions_of(9),
            files=files_of("slow"),
            margin_path=None,
            margin_arcsec=None,
            index_path=None,
            expected_current=1,
        )
    assert snapshot(store) == before
    assert store.ingests(status="running")[0].id == slow
    with pytest.raises(IngestError, match="changed during ingest"):
        publish(store, spec, tag="new", expected_current=0)


def test_error_inside_commit_rolls_everything_back(store: MetadataStore) -> None:
    # A new table: the table row, columns and version are inserted before the
    # duplicate partition fails, and none of them may stay.
    doubled = [*partitions_of(1), partitions_of(1)[0]]
    with pytest.raises(IngestError, match=r"demo\.Object: cannot publish"):
        publish(store, make_spec(), partitions=doubled)
    with pytest.raises(NotFoundError):
        store.table("demo.Object")
    assert snapshot(store)["counts"] == {
        "catalog_table": 0,
        "catalog_column": 0,
        "ingest": 1,
        "ingest_input": 0,
        "table_version": 0,
        "version_partition": 0,
        "version_file": 0,
        "uws_job": 0,
    }
    assert [r.status for r in store.ingests()] == ["running"]

    # An existing table: the spec update and column replacement roll back too.
    publish(store, make_spec(), tag="v1")
    ingest_id = store.begin_ingest("demo.Object", "append", [], "staging/bad", 1)
    before = snapshot(store)
    with pytest.raises(IngestError, match="cannot publish"):
        store.commit_version(
            ingest_id,
            make_spec(extra=True),
            path="tables/demo.object/bad",
            num_rows=1,
            partitions=partitions_of(2),
            files=files_of("bad") + files_of("bad"),
            margin_path=None,
            margin_arcsec=None,
            index_path=None,
        )
    assert snapshot(store) == before
    assert store.table("demo.Object").spec == make_spec()


def test_statistics_that_are_not_json_are_refused(store: MetadataStore) -> None:
    bad = [PartitionRecord(0, 4, 1, "p", {"ra": [float("nan"), 1.0]})]
    with pytest.raises(IngestError, match=r"Norder=0/Npix=4: statistics of column 'ra'"):
        publish(store, make_spec(), partitions=bad)
    assert store.tables() == []


def test_two_processes_open_and_commit_concurrently(tmp_path: Path) -> None:
    workers = 4
    # Each process creates its own engine after starting, as separate qcat
    # commands do; fork only saves re-importing the libraries.
    forkable = "fork" in multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork") if forkable else multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_open_and_publish, args=(tmp_path / "data", i, barrier, results))
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    errors = [o for o in outcomes if isinstance(o, str)]
    assert errors == []
    assert sorted(outcomes) == [1, 2, 3, 4]
    with MetadataStore.for_data_dir(tmp_path / "data") as store:
        assert store.table("demo.Object").current_version == 4
        assert sorted(r.status for r in store.ingests()) == ["committed"] * workers
        with store.engine.connect() as conn:
            assert migrate.current_revision(conn) == migrate.head_revision()


def _open_and_publish(data_dir: Path, worker: int, barrier: Any, results: Any) -> None:
    try:
        barrier.wait(timeout=60)  # every process creates and migrates the store at once
        with MetadataStore.for_data_dir(data_dir) as store:
            version = publish(
                store, make_spec(), inputs=inputs_named(f"w{worker}"), tag=f"w{worker}"
            )
            results.put(version.version)
    except BaseException:
        results.put(traceback.format_exc())


# -- reading -------------------------------------------------------------------


def test_committed_input_checksums_follow_the_lineage(store: MetadataStore) -> None:
    spec = make_spec()
    assert store.committed_input_checksums("demo.Object") == set()
    publish(store, spec, inputs=inputs_named("a", "b"), tag="1")
    publish(store, spec, operation="append", inputs=inputs_named("c"), tag="2")
    failed = store.begin_ingest("demo.Object", "append", inputs_named("d"), "staging/f", 1)
    store.fail_ingest(failed, "broken")
    store.begin_ingest("demo.Object", "append", inputs_named("e"), "staging/r", 1)  # running
    assert store.committed_input_checksums("DEMO.object") == {sha("a"), sha("b"), sha("c")}

    # Ingesting from scratch replaces the data: the old inputs are no longer in it.
    publish(store, spec, operation="ingest", inputs=inputs_named("f"), tag="3")
    publish(store, spec, operation="append", inputs=inputs_named("g", "f"), tag="4")
    assert store.committed_input_checksums("demo.Object") == {sha("f"), sha("g")}
    assert store.committed_input_checksums("demo.Other") == set()


def test_unknown_table_raises_not_found_naming_it(store: MetadataStore) -> None:
    with pytest.raises(NotFoundError, match=r"no table 'demo\.Objekt': the catalog has no tables"):
        store.table("demo.Objekt")
    publish(store, make_spec())
    publish(store, make_spec("dp1.Source"))
    with pytest.raises(NotFoundError, match=r"'demo\.Objekt'; did you mean demo\.Object\?"):
        store.table("demo.Objekt")
    with pytest.raises(NotFoundError, match=r"'other\.Source'; did you mean dp1\.Source\?"):
        store.versions("other.Source")
    with pytest.raises(
        NotFoundError, match=r"'zzz\.qqq'; the catalog has demo\.Object, dp1\.Source"
    ):
        store.current_version("zzz.qqq")
    for read in (store.partitions, store.files, store.versions):
        with pytest.raises(NotFoundError, match=r"'nope\.nope'"):
            read("nope.nope")


def test_names_are_case_insensitive_and_follow_the_latest_spec(store: MetadataStore) -> None:
    publish(store, make_spec("demo.object"), tag="v1")
    assert store.table("DEMO.OBJECT").name == "demo.object"
    publish(store, make_spec("Demo.Object"), operation="append", tag="v2")
    table = store.table("demo.object")
    assert (table.name, table.spec.qualified_name) == ("Demo.Object", "Demo.Object")
    # The rename reached every row of every version.
    assert [v.table for v in store.versions("demo.OBJECT")] == ["Demo.Object", "Demo.Object"]
    assert len(store.partitions("demo.object", 1)) == 2
    assert len(store.files("demo.object", 1)) == 3
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
        for t in (catalog_column, table_version, version_partition, version_file):
            names = set(conn.execute(select(t.c.table_name)).scalars())
            assert names == {"Demo.Object"}, t.name
        assert conn.execute(select(catalog_table.c.name_folded)).scalar() == "demo.object"
    assert [r.version for r in store.ingests("DEMO.OBJECT")] == [1, 2]


def test_files_default_to_current_versions_of_all_tables(store: MetadataStore) -> None:
    publish(store, make_spec(), tag="v1")
    publish(store, make_spec(), operation="append", tag="v2")
    publish(store, make_spec("dp1.Source"), tag="s1")
    paths = [f.path for f in store.files()]
    assert paths == sorted(
        [f.path for f in files_of("tables/demo.object/v2")]
        + [f.path for f in files_of("tables/dp1.source/s1")]
    )
    with pytest.raises(ValueError, match="needs a table name"):
        store.files(version=1)


def test_live_paths(store: MetadataStore) -> None:
    publish(store, make_spec(), tag="v1")
    publish(store, make_spec(), operation="append", tag="v2")
    publish(store, make_spec("dp1.Source"), tag="s1")
    store.begin_ingest("dp1.Source", "append", [], "staging/running", 1)
    failed = store.begin_ingest("dp1.Source", "append", [], "staging/failed", 1)
    store.fail_ingest(failed, "x")
    assert store.live_paths() == {
        "tables/demo.object/v2",
        "tables/demo.object/v2/margin",
        "tables/demo.object/v2/index",
        "tables/dp1.source/s1",
        "tables/dp1.source/s1/margin",
        "tables/dp1.source/s1/index",
        "staging/running",
    }


def test_invalid_arguments(store: MetadataStore) -> None:
    with pytest.raises(SchemaError, match=r"'Object' must be schema\.table"):
        store.begin_ingest("Object", "ingest", [], "s", 1)
    with pytest.raises(ValueError, match="operation 'load'"):
        store.begin_ingest("demo.Object", "load", [], "s", 1)
    with pytest.raises(ValueError, match="status 'done'"):
        store.ingests(status="done")
    other = store.begin_ingest("demo.Other", "ingest", [], "s", 1)
    with pytest.raises(
        IngestError, match=f"ingest {other} is of table demo.Other, not demo.Object"
    ):
        store.commit_version(
            other,
            make_spec(),
            path="p",
            num_rows=0,
            partitions=[],
            files=[],
            margin_path=None,
            margin_arcsec=None,
            index_path=None,
        )
    bad_file = [FileRecord("f", 1, "abc", "data")]
    with pytest.raises(ValueError, match="file f: 'abc' is not"):
        store.commit_version(
            other,
            make_spec("demo.Other"),
            path="p",
            num_rows=0,
            partitions=[],
            files=bad_file,
            margin_path=None,
            margin_arcsec=None,
            index_path=None,
        )
    with pytest.raises(ValueError, match="role 'thumbnail'"):
        store.commit_version(
            other,
            make_spec("demo.Other"),
            path="p",
            num_rows=0,
            partitions=[],
            files=[FileRecord("f", 1, sha("f"), "thumbnail")],
            margin_path=None,
            margin_arcsec=None,
            index_path=None,
        )
