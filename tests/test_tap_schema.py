"""TAP_SCHEMA and the VOSI /tables documents over a small ingested demo catalog.

The TAP_SCHEMA rows are checked against the demo's Felis file, queried with
ADQL through the real query engine and workers, and refreshed as tables come
and go; the VOSI documents are validated against the IVOA schemas STILTS
bundles and read back with pyvo's parser.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyvo.io.vosi import parse_tables

from partition.ingest import IngestOptions, ingest_table
from qcat.czar.adql import AdqlSyntaxError
from qcat.czar.catalog import CatalogSnapshot
from qcat.czar.engine import WORKER_SETUP_MODULE, QueryEngine
from qcat.czar.errors import ResolveError
from qcat.metadata.store import MetadataStore
from qcat.schema import ColumnSpec, TableSpec, infer_spec, load_felis
from qcat.tap_schema import (
    TAP_SCHEMA,
    VOTableType,
    adql_name,
    describe,
    refresh_tap_schema,
    schema_path,
    tap_schema_tables,
    votable_type,
)
from qcat.worker.pool import LocalWorkers
from services.tap import vosi_tables
from services.tap.vosi_tables import InvalidDetail, UnknownTable, table_xml, tableset_xml
from tests.conftest import DemoTables, make_demo, qcat_cli

OPTIONS = IngestOptions(show_progress=False, threshold=150)
TAP_TABLES = ["schemas", "tables", "columns", "keys", "key_columns"]
#: Felis datatypes of the demo tables -> VOTable datatypes (TAP 1.1 TAP_SCHEMA.columns).
DEMO_VOTABLE_TYPES = {
    "long": "long",
    "double": "double",
    "float": "float",
    "boolean": "boolean",
    "char": "char",
}


@dataclass
class Catalog:
    demo: DemoTables
    data: Path
    engine: QueryEngine


def ingest_demo(root: Path, demo: DemoTables) -> Path:
    data = root / "data"
    for spec, rows, file in (
        (demo.object_spec, demo.objects, "objects.parquet"),
        (demo.source_spec, demo.sources, "sources.parquet"),
    ):
        pq.write_table(rows, root / file)
        ingest_table(data, spec, [root / file], OPTIONS)
    return data


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalog]:
    root = tmp_path_factory.mktemp("tap_schema")
    demo = make_demo(300, seed=5)
    data = ingest_demo(root, demo)
    assert refresh_tap_schema(data) is True
    with LocalWorkers(data, 1, memory_limit="256MB", setup_sql_module=WORKER_SETUP_MODULE) as w:
        engine = QueryEngine(data, w.locations, timeout_s=60)
        try:
            yield Catalog(demo, data, engine)
        finally:
            engine.close()


def rows_of(table: pa.Table) -> list[dict[str, Any]]:
    return table.to_pylist()


def query(catalog: Catalog, adql: str) -> list[dict[str, Any]]:
    return rows_of(catalog.engine.execute(adql).read_all())


def generated(data: Path) -> dict[str, pa.Table]:
    with MetadataStore.for_data_dir(data) as store:
        return tap_schema_tables(store)


def versions(data: Path) -> dict[str, int | None]:
    with MetadataStore.for_data_dir(data) as store:
        return {t.name: t.current_version for t in store.tables()}


# -- datatypes and names ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("datatype", "length", "expected"),
    [
        ("boolean", None, VOTableType("boolean")),
        ("byte", None, VOTableType("short")),  # int8 does not fit unsignedByte
        ("long", None, VOTableType("long")),
        ("float", None, VOTableType("float")),
        ("char", 1, VOTableType("char")),
        ("char", 8, VOTableType("char", "8")),
        ("string", 32, VOTableType("char", "32*")),
        ("string", None, VOTableType("char", "*")),
        ("unicode", 16, VOTableType("unicodeChar", "16*")),
        ("text", None, VOTableType("char", "*")),
        ("binary", None, VOTableType("unsignedByte", "*")),
        ("timestamp", None, VOTableType("char", "*", "timestamp")),
    ],
)
def test_votable_types(datatype: str, length: int | None, expected: VOTableType) -> None:
    assert votable_type(ColumnSpec("c", datatype, length=length)) == expected


def test_adql_names_are_delimited_only_when_needed() -> None:
    assert adql_name("objectId") == "objectId"
    assert adql_name("size") == '"size"'
    assert adql_name("SELECT") == '"SELECT"'
    assert adql_name("_private") == '"_private"'
    assert adql_name('odd"name') == '"odd""name"'


def test_schemas_group_tables_whatever_the_case_and_list_tap_schema_last() -> None:
    specs = [plain_spec("Extra.b"), plain_spec("extra.a"), plain_spec("alpha.z")]
    schemas = describe([*specs, *load_felis(schema_path()).values()])
    assert [(s.name, s.schema_index) for s in schemas] == [
        ("alpha", 1),
        ("Extra", 2),
        (TAP_SCHEMA, 3),
    ]
    extra = schemas[1]
    assert [(t.name, t.schema_name, t.table_index) for t in extra.tables] == [
        ("extra.a", "Extra", 2),
        ("Extra.b", "Extra", 3),
    ]
    assert [t.table_index for t in schemas[2].tables] == [4, 5, 6, 7, 8]


# -- the rows -----------------------------------------------------------------------------


def test_columns_rows_match_the_felis_metadata(catalog: Catalog) -> None:
    columns = rows_of(generated(catalog.data)["TAP_SCHEMA.columns"])
    for spec in (catalog.demo.object_spec, catalog.demo.source_spec):
        got = [r for r in columns if r["table_name"] == spec.qualified_name]
        assert [r["column_name"] for r in got] == spec.column_names
        assert [r["column_index"] for r in got] == list(range(1, len(spec.columns) + 1))
        for row, column in zip(got, spec.columns, strict=True):
            assert row["description"] == column.description
            assert row["unit"] == column.unit
            assert row["ucd"] == column.ucd
            assert row["principal"] == int(column.principal)
            assert row["std"] == 0
            # The demo has scalars only (its char columns hold one character).
            assert row["datatype"] == DEMO_VOTABLE_TYPES[column.datatype]
            assert (row["arraysize"], row["xtype"]) == (None, None)
    assert not [r for r in columns if "healpix" in str(r["column_name"])]
    indexed = {(r["table_name"], r["column_name"]) for r in columns if r["indexed"]}
    demo = {k for k in indexed if str(k[0]).startswith("demo.")}
    assert demo == {
        ("demo.Object", "objectId"),
        ("demo.Object", "coord_ra"),
        ("demo.Object", "coord_dec"),
        ("demo.Source", "sourceId"),
        ("demo.Source", "objectId"),
    }
    band = next(r for r in columns if r["column_name"] == "band")
    assert band["size"] is None  # char of length 1: a single character, no arraysize


def test_tap_schema_describes_itself(catalog: Catalog) -> None:
    tables = generated(catalog.data)
    own = load_felis(schema_path())
    assert [r["table_name"] for r in rows_of(tables["TAP_SCHEMA.tables"])] == [
        "demo.Object",
        "demo.Source",
        *own,
    ]
    schemas = rows_of(tables["TAP_SCHEMA.schemas"])
    assert [(r["schema_name"], r["schema_index"]) for r in schemas] == [
        ("demo", 1),
        (TAP_SCHEMA, 2),
    ]
    assert schemas[1]["description"]
    columns = rows_of(tables["TAP_SCHEMA.columns"])
    for name, spec in own.items():
        assert tables[name].schema == spec.arrow_schema()
        got = [r for r in columns if r["table_name"] == name]
        assert [r["column_name"] for r in got] == [adql_name(c) for c in spec.column_names]
        assert all(r["std"] == 1 and r["principal"] == 1 for r in got)
        assert [r["description"] for r in got] == [c.description for c in spec.columns]
    # Every column TAP 1.1 requires, in its order; "size" delimited as ADQL needs.
    assert [r["column_name"] for r in columns if r["table_name"] == "TAP_SCHEMA.columns"] == [
        "table_name",
        "column_name",
        "datatype",
        "arraysize",
        "xtype",
        '"size"',
        "description",
        "utype",
        "unit",
        "ucd",
        "indexed",
        "principal",
        "std",
        "column_index",
    ]
    table_index = [r["table_index"] for r in rows_of(tables["TAP_SCHEMA.tables"])]
    assert table_index == sorted(set(table_index))


def test_keys_refer_to_described_tables_and_columns(catalog: Catalog) -> None:
    tables = generated(catalog.data)
    columns = {(r["table_name"], r["column_name"]) for r in rows_of(tables["TAP_SCHEMA.columns"])}
    keys = {r["key_id"]: r for r in rows_of(tables["TAP_SCHEMA.keys"])}
    pairs = rows_of(tables["TAP_SCHEMA.key_columns"])
    demo_key = next(k for k in keys.values() if k["from_table"] == "demo.Source")
    assert demo_key["target_table"] == "demo.Object"
    demo_pairs = [p for p in pairs if p["key_id"] == demo_key["key_id"]]
    assert [(p["from_column"], p["target_column"]) for p in demo_pairs] == [
        ("objectId", "objectId")
    ]
    own = {(k["from_table"], k["target_table"]) for k in keys.values()} - {
        ("demo.Source", "demo.Object")
    }
    assert own == {
        ("TAP_SCHEMA.tables", "TAP_SCHEMA.schemas"),
        ("TAP_SCHEMA.columns", "TAP_SCHEMA.tables"),
        ("TAP_SCHEMA.keys", "TAP_SCHEMA.tables"),
        ("TAP_SCHEMA.key_columns", "TAP_SCHEMA.keys"),
    }
    assert len(keys) == 6  # keys has two keys to tables
    assert {p["key_id"] for p in pairs} == set(keys)
    for p in pairs:
        key = keys[p["key_id"]]
        assert (key["from_table"], p["from_column"]) in columns
        assert (key["target_table"], p["target_column"]) in columns


def test_store_and_catalog_snapshot_give_the_same_rows(catalog: Catalog) -> None:
    with MetadataStore.for_data_dir(catalog.data) as store:
        from_store = tap_schema_tables(store)
        from_snapshot = tap_schema_tables(CatalogSnapshot.load(store))
    assert from_store.keys() == from_snapshot.keys()
    for name, table in from_store.items():
        assert table.equals(from_snapshot[name])


# -- ADQL over the published tables ------------------------------------------------------


def test_adql_reads_the_published_tap_schema(catalog: Catalog) -> None:
    expected = generated(catalog.data)
    for name in TAP_TABLES:
        got = query(catalog, f"SELECT * FROM TAP_SCHEMA.{name}")
        assert got == rows_of(expected[f"TAP_SCHEMA.{name}"]), name
    got = query(
        catalog,
        'SELECT column_name, datatype, "size" FROM tap_schema.columns '
        "WHERE table_name = 'demo.Source' AND column_name = 'band'",
    )
    assert got == [{"column_name": "band", "datatype": "char", "size": None}]
    joined = query(
        catalog,
        "SELECT k.from_table, c.from_column, c.target_column FROM TAP_SCHEMA.keys AS k "
        "JOIN TAP_SCHEMA.key_columns AS c ON k.key_id = c.key_id "
        "WHERE k.target_table = 'demo.Object'",
    )
    assert joined == [
        {"from_table": "demo.Source", "from_column": "objectId", "target_column": "objectId"}
    ]
    counts = query(
        catalog,
        "SELECT t.table_name, COUNT(*) AS n FROM TAP_SCHEMA.tables AS t "
        "JOIN TAP_SCHEMA.columns AS c ON c.table_name = t.table_name "
        "WHERE t.schema_name = 'demo' GROUP BY t.table_name ORDER BY t.table_name",
    )
    assert counts == [
        {"table_name": "demo.Object", "n": len(catalog.demo.object_spec.columns)},
        {"table_name": "demo.Source", "n": len(catalog.demo.source_spec.columns)},
    ]


def test_size_is_reserved_in_adql(catalog: Catalog) -> None:
    with pytest.raises(AdqlSyntaxError, match="SIZE is a reserved word"):
        catalog.engine.execute("SELECT size FROM TAP_SCHEMA.columns")


# -- refresh -------------------------------------------------------------------------


def plain_spec(name: str) -> TableSpec:
    schema = pa.schema([("filter", pa.string()), ("wavelength", pa.float64())])
    return infer_spec(schema, name)


def write_filters(path: Path) -> Path:
    pq.write_table(pa.table({"filter": ["u", "g", "r"], "wavelength": [360.0, 480.0, 620.0]}), path)
    return path


def test_refresh_is_idempotent_and_follows_ingests(tmp_path: Path) -> None:
    demo = make_demo(120, seed=9)
    data = ingest_demo(tmp_path, demo)
    assert refresh_tap_schema(data) is True
    first = versions(data)
    assert refresh_tap_schema(data) is False
    assert versions(data) == first

    # New rows in a described table change nothing TAP_SCHEMA says.
    more = make_demo(40, seed=10)
    objects = more.objects.set_column(
        0, "objectId", pa.array([10**12 + i for i in range(more.objects.num_rows)], pa.int64())
    )
    pq.write_table(objects, tmp_path / "more.parquet")
    ingest_table(data, demo.object_spec, [tmp_path / "more.parquet"], OPTIONS)
    assert refresh_tap_schema(data) is False

    # A new table in a new schema: schemas, tables and columns change, keys do not.
    ingest_table(data, plain_spec("extra.Filter"), [write_filters(tmp_path / "f.parquet")], OPTIONS)
    before = versions(data)
    assert refresh_tap_schema(data) is True
    after = versions(data)
    changed = {n for n in after if after[n] != before.get(n)}
    assert changed == {"TAP_SCHEMA.schemas", "TAP_SCHEMA.tables", "TAP_SCHEMA.columns"}
    tables = generated(data)
    assert "extra.Filter" in [r["table_name"] for r in rows_of(tables["TAP_SCHEMA.tables"])]
    assert [r["schema_name"] for r in rows_of(tables["TAP_SCHEMA.schemas"])] == [
        "demo",
        "extra",
        TAP_SCHEMA,
    ]
    # What is published is what the metadata says now.
    with MetadataStore.for_data_dir(data) as store:
        for name, table in tables.items():
            version = store.current_version(name)
            assert version is not None
            assert pq.read_table(data / version.path / "table.parquet").equals(table)
        assert not list((data / "staging").iterdir())


def test_refresh_repairs_a_tampered_tap_schema(tmp_path: Path) -> None:
    data = ingest_demo(tmp_path, make_demo(60, seed=4))
    assert refresh_tap_schema(data) is True
    good = generated(data)["TAP_SCHEMA.keys"]
    # An operator appends rows to TAP_SCHEMA.keys by hand: the next refresh undoes it.
    bogus = pa.table(
        {
            "key_id": ["x"],
            "from_table": ["a.b"],
            "target_table": ["c.d"],
            "description": [None],
            "utype": [None],
        },
        schema=good.schema,
    )
    pq.write_table(bogus, tmp_path / "bogus.parquet")
    keys_spec = load_felis(schema_path())["TAP_SCHEMA.keys"]
    ingest_table(data, keys_spec, [tmp_path / "bogus.parquet"], OPTIONS)
    assert refresh_tap_schema(data) is True
    with MetadataStore.for_data_dir(data) as store:
        version = store.current_version("TAP_SCHEMA.keys")
        assert version is not None
        assert pq.read_table(data / version.path / "table.parquet").equals(good)


def test_concurrent_refreshes_publish_once(tmp_path: Path) -> None:
    data = ingest_demo(tmp_path, make_demo(60, seed=6))
    results: list[bool] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(refresh_tap_schema(data))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(results) == [False, False, True]
    assert all(v == 1 for n, v in versions(data).items() if n.startswith(TAP_SCHEMA))


# -- VOSI ----------------------------------------------------------------------------


def validate(tmp_path: Path, name: str, document: bytes) -> None:
    """Validate against the VOSI/VODataService schemas bundled with STILTS (no network)."""
    stilts = shutil.which("stilts")
    assert stilts, "STILTS is needed to validate VOSI documents"
    path = tmp_path / name
    path.write_bytes(document)
    proc = subprocess.run(
        [stilts, "xsdvalidate", "uselocals=true", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def snapshot(catalog: Catalog) -> CatalogSnapshot:
    return CatalogSnapshot.for_data_dir(catalog.data)


def test_tableset_is_schema_valid_and_complete(catalog: Catalog, tmp_path: Path) -> None:
    document = tableset_xml(snapshot(catalog))
    validate(tmp_path, "tableset.xml", document)
    parsed = parse_tables(io.BytesIO(document), pedantic=True)
    tables = {t.name: t for t in parsed.iter_tables()}
    assert list(tables) == ["demo.Object", "demo.Source", *load_felis(schema_path())]
    source = tables["demo.Source"]
    assert source.nrows == catalog.demo.sources.num_rows
    assert [c.name for c in source.columns] == catalog.demo.source_spec.column_names
    by_name = {c.name: c for c in source.columns}
    assert set(by_name["sourceId"].flags) == {"indexed", "primary"}
    assert by_name["psFlux"].flags == ["nullable"]
    assert by_name["band"].datatype.content == "char"
    [key] = source.foreignkeys
    assert key.targettable == "demo.Object"
    assert [(p.fromcolumn, p.targetcolumn) for p in key.fkcolumns] == [("objectId", "objectId")]
    # Text with markup characters survives (escaped once, not twice).
    umag = next(c for c in tables["demo.Object"].columns if c.name == "u_psfMag")
    assert "u_psfFlux <= 0" in umag.description
    size = next(c for c in tables["TAP_SCHEMA.columns"].columns if c.name == '"size"')
    assert size.std is True and size.datatype.content == "int"


def test_tableset_detail(catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    minimal = tableset_xml(snapshot(catalog), detail="min")
    validate(tmp_path, "min.xml", minimal)
    parsed = list(parse_tables(io.BytesIO(minimal)).iter_tables())
    assert len(parsed) == 7
    assert all(not t.columns and not t.foreignkeys and t.description for t in parsed)
    full = tableset_xml(snapshot(catalog), detail="MAX")
    assert all(t.columns for t in parse_tables(io.BytesIO(full)).iter_tables())
    assert tableset_xml(snapshot(catalog)) == full
    # A catalog with more columns than the limit answers as for detail=min by default.
    monkeypatch.setattr(vosi_tables, "FULL_TABLESET_MAX_COLUMNS", 10)
    assert tableset_xml(snapshot(catalog)) == minimal
    assert tableset_xml(snapshot(catalog), detail="max") == full
    with pytest.raises(InvalidDetail, match="min or max"):
        tableset_xml(snapshot(catalog), detail="everything")


def test_single_table_document(catalog: Catalog, tmp_path: Path) -> None:
    document = table_xml(snapshot(catalog), "DEMO.source")
    validate(tmp_path, "table.xml", document)
    table = parse_tables(io.BytesIO(document)).get_first_table()
    assert table.name == "demo.Source"
    assert len(table.columns) == len(catalog.demo.source_spec.columns)
    assert [k.targettable for k in table.foreignkeys] == ["demo.Object"]
    keys = parse_tables(io.BytesIO(table_xml(snapshot(catalog), "TAP_SCHEMA.keys")))
    assert sorted(k.fkcolumns[0].fromcolumn for k in keys.get_first_table().foreignkeys) == [
        "from_table",
        "target_table",
    ]


def test_unknown_table_suggests_close_names(catalog: Catalog) -> None:
    with pytest.raises(UnknownTable, match=r"did you mean demo\.Source") as info:
        table_xml(snapshot(catalog), "demo.Sorce")
    assert isinstance(info.value, ResolveError)
    with pytest.raises(UnknownTable, match=r"did you mean demo\.Object"):
        table_xml(snapshot(catalog), "Object")
    with pytest.raises(UnknownTable) as nothing:
        table_xml(snapshot(catalog), "zzz.qqq")
    assert nothing.value.suggestions == []


def test_qcat_ingest_refreshes_tap_schema_and_refuses_to_overwrite_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    filters = write_filters(tmp_path / "filters.parquet")
    qcat_cli("ingest", "--data", data, "--table", "survey.Filter", filters, "--quiet")
    published = CatalogSnapshot.for_data_dir(data).table("TAP_SCHEMA.tables").plain_path
    assert published is not None
    assert "survey.Filter" in pq.read_table(data / published).column("table_name").to_pylist()
    refused = qcat_cli(
        "ingest", "--data", data, "--table", "tap_schema.tables", filters, check=False
    )
    assert refused.returncode != 0
    assert "TAP_SCHEMA tables are generated" in refused.stderr
