"""ivoa.ObsCore through a real TAP service: ADQL, absolute access_url, utype/xtype, taplint."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pyarrow as pa
import pytest
import pyvo
from astropy.io import votable

from partition.images import ingest_images
from qcat.czar.resolve import OutputColumn
from qcat.schema import ColumnSpec
from qcat.tap_schema import refresh_tap_schema
from services.settings import ServiceSettings
from services.tap.formats.urls import absolute_urls
from tests.image_headers import celestial_header, write_fits
from tests.service_support import serve_data
from tests.xsd import assert_schema_valid

QUERY = (
    "SELECT obs_id, obs_publisher_did, access_url, s_region, s_ra, em_min FROM ivoa.ObsCore "
    "WHERE 1 = CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', 150.0, 2.0, 0.1)) "
    "ORDER BY obs_id"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A service whose only catalog is ivoa.ObsCore with four images; yields (base URL, data)."""
    root = tmp_path_factory.mktemp("obscore")
    src = root / "in"
    src.mkdir()
    for i, (ra, dec, band) in enumerate([(150.0, 2.0, "g"), (150.03, 2.02, "r"), (10, -40, "i")]):
        h = celestial_header(64, 48, ra, dec, rotation_deg=10.0 * i)
        h["FILTER"] = band
        write_fits(src / f"img{i}.fits", h)
    write_fits(src / "far.fits", celestial_header(64, 64, 300.0, 60.0, projection="SIN"))
    data = root / "data"
    assert ingest_images(data, "demo", [src]).rows_added == 4
    refresh_tap_schema(data)
    with serve_data(data, ServiceSettings.defaults()) as (_, url):
        yield url, data


def test_adql_on_obscore_with_absolute_access_urls(site: tuple[str, Path]) -> None:
    url, _ = site
    result = pyvo.dal.TAPService(url + "/tap").run_sync(QUERY)
    table = result.to_table()
    assert list(table["obs_id"]) == ["img0", "img1"]
    for row in table:
        did = f"ivo://qcat/demo?{row['obs_id']}"
        assert row["obs_publisher_did"] == did
        assert row["access_url"] == f"{url}/datalink/links?ID={quote(did, safe='')}"
        assert str(row["s_region"]).startswith("POLYGON ICRS ")
    assert table["em_min"][0] == pytest.approx(400e-9)
    fields = {f.name: f for f in result.votable.get_first_table().fields}
    assert fields["s_region"].xtype == "adql:REGION"
    assert fields["s_region"].utype == "obscore:Char.SpatialAxis.Coverage.Support.Area"
    assert fields["access_url"].utype == "obscore:Access.Reference"
    assert fields["access_url"].ucd == "meta.ref.url"
    assert fields["em_min"].unit == "m"


def test_csv_and_async_results_have_absolute_urls(site: tuple[str, Path]) -> None:
    url, _ = site
    csv = httpx.get(
        url + "/tap/sync",
        params={"LANG": "ADQL", "QUERY": QUERY, "RESPONSEFORMAT": "csv"},
    ).text
    assert csv.count(f"{url}/datalink/links?ID=ivo%3A%2F%2Fqcat%2Fdemo%3Fimg") == 2
    job = pyvo.dal.TAPService(url + "/tap").run_async(QUERY)
    assert list(job.to_table()["access_url"]) == [
        f"{url}/datalink/links?ID={quote(f'ivo://qcat/demo?img{i}', safe='')}" for i in (0, 1)
    ]


def test_metadata_carries_utypes(site: tuple[str, Path]) -> None:
    url, _ = site
    service = pyvo.dal.TAPService(url + "/tap")
    rows = service.run_sync(
        "SELECT column_name, utype, xtype, std FROM TAP_SCHEMA.columns "
        "WHERE table_name = 'ivoa.ObsCore'"
    ).to_table()
    by_name = {r["column_name"]: r for r in rows}
    assert by_name["obs_publisher_did"]["utype"] == "obscore:Curation.PublisherDID"
    assert by_name["s_region"]["xtype"] == "adql:REGION"
    assert (by_name["s_ra"]["std"], by_name["file_sha256"]["std"]) == (1, 0)
    tables = service.run_sync(
        "SELECT utype FROM TAP_SCHEMA.tables WHERE table_name = 'ivoa.ObsCore'"
    ).to_table()
    assert list(tables["utype"]) == ["ivo://ivoa.net/std/ObsCore#table-1.1"]
    document = httpx.get(url + "/tap/tables/ivoa.ObsCore").content
    assert_schema_valid(document)
    assert b"<utype>obscore:Access.Reference</utype>" in document
    capabilities = httpx.get(url + "/tap/capabilities").content
    assert_schema_valid(capabilities)
    assert (
        b'<dataModel ivo-id="ivo://ivoa.net/std/ObsCore#core-1.1">ObsCore-1.1</dataModel>'
        in capabilities
    )


def test_taplint_and_votlint(site: tuple[str, Path], tmp_path: Path) -> None:
    """taplint, every stage, with ObsCore loaded: no error or warning; votlint on a result."""
    url, _ = site
    stages = "TMV TME TMS TMC CPV CAP AVV QGE QPO QAS UWS MDQ OBS LOC UPL EXA"
    done = subprocess.run(
        ["stilts", "taplint", f"tapurl={url}/tap", f"stages={stages}", "report=EW"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    known = (("E-CAP-KEYX", "features-adql-conditional"),)  # as in test_tap_service.py
    problems = [
        line
        for line in done.stdout.splitlines()
        if line.startswith(("E-", "W-"))
        and not any(line.startswith(code) and text in line for code, text in known)
    ]
    assert done.returncode == 0 and not problems, done.stdout[-3000:] + done.stderr[-2000:]
    assert "Section OBS" in done.stdout
    result = httpx.get(
        url + "/tap/sync",
        params={
            "LANG": "ADQL",
            "QUERY": "SELECT * FROM ivoa.ObsCore",
            "RESPONSEFORMAT": "votable/td",
        },
    )
    path = tmp_path / "obscore.vot"
    path.write_bytes(result.content)
    lint = subprocess.run(
        ["stilts", "votlint", f"votable={path}"], capture_output=True, text=True, timeout=120
    )
    assert lint.returncode == 0 and lint.stdout.strip() == "", lint.stdout + lint.stderr
    assert len(votable.parse(io.BytesIO(result.content)).get_first_table().array) == 4


def test_relative_urls_become_absolute_on_arrow_batches() -> None:
    url_column = OutputColumn("link", ColumnSpec("link", "string", ucd="meta.ref.url"))
    text_column = OutputColumn("note", ColumnSpec("note", "string", ucd="meta.note"))
    links = ["/datalink/links?ID=a", "https://elsewhere/x", "//cdn/y", None, "relative"]
    batch = pa.record_batch(
        {
            "link": pa.array(links).dictionary_encode(),
            "note": pa.array(["/not/a/url/column"] * 5),
        }
    )
    reader = pa.RecordBatchReader.from_batches(batch.schema, [batch])
    out = absolute_urls(reader, [url_column, text_column], "https://data.example.org/qcat/")
    table = out.read_all()
    assert table["link"].to_pylist() == [
        "https://data.example.org/qcat/datalink/links?ID=a",
        "https://elsewhere/x",
        "//cdn/y",
        None,
        "relative",
    ]
    assert table["note"].to_pylist() == ["/not/a/url/column"] * 5
    same = pa.RecordBatchReader.from_batches(batch.schema, [batch])
    assert absolute_urls(same, [url_column, text_column], None) is same


def test_specs_stored_before_utypes_still_load() -> None:
    """Metadata-store JSON written before utype/xtype/std existed loads with them unset."""
    from qcat.schema import TableSpec

    old = {
        "schema_name": "demo",
        "name": "T",
        "columns": [
            {
                "name": "a",
                "datatype": "int",
                "nullable": True,
                "description": None,
                "unit": None,
                "ucd": None,
                "length": None,
                "principal": False,
            }
        ],
        "description": None,
        "primary_key": [],
    }
    spec = TableSpec.from_dict(old)
    assert (spec.utype, spec.columns[0].utype, spec.columns[0].xtype) == (None, None, None)
    assert spec.columns[0].std is None
    assert TableSpec.from_dict(spec.to_dict()) == spec
