"""TAP_UPLOAD over HTTP: a positional crossmatch of an uploaded list, sync and async.

The answer is checked against astropy's ``search_around_sky`` on the raw
catalog; the plan must match the upload chunk by chunk on the workers.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

import astropy.units as u
import httpx
import numpy as np
import pytest
import pyvo
from astropy.coordinates import SkyCoord, search_around_sky
from astropy.io.votable import from_table, writeto
from astropy.table import MaskedColumn, Table

from qcat.czar.plan import QueryPlan
from services.settings import ServiceSettings
from services.tap.upload import votable_to_arrow
from tests.service_support import Served, dali_error, demo_service

RADIUS_DEG = 0.05
CROSSMATCH = (  # the query TOPCAT writes for an upload crossmatch
    "SELECT u.id, o.objectId, DISTANCE(POINT('ICRS', u.ra, u.dec), "
    "POINT('ICRS', o.coord_ra, o.coord_dec)) AS sep "
    "FROM TAP_UPLOAD.targets AS u JOIN demo.Object AS o "
    "ON 1 = CONTAINS(POINT('ICRS', o.coord_ra, o.coord_dec), "
    f"CIRCLE('ICRS', u.ra, u.dec, {RADIUS_DEG}))"
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    settings = ServiceSettings.defaults(tap_upload_max_bytes=200_000)
    with demo_service(tmp_path_factory.mktemp("upload"), settings, threshold=300) as served:
        yield served


def targets(served: Served, n: int = 60) -> Table:
    """Positions near catalog objects (so there are matches), plus a few anywhere."""
    rows = served.raw_rows(f"SELECT coord_ra, coord_dec FROM object USING SAMPLE {n} ROWS")
    rng = np.random.default_rng(3)
    ra = np.array([r[0] for r in rows]) + rng.normal(0, 0.01, len(rows))
    dec = np.clip(np.array([r[1] for r in rows]) + rng.normal(0, 0.01, len(rows)), -90, 90)
    table = Table({"id": np.arange(len(rows)), "ra": np.mod(ra, 360), "dec": dec})
    table["ra"].unit = u.deg
    table["dec"].unit = u.deg
    return table


def expected(served: Served, table: Table) -> set[tuple[int, int]]:
    rows = served.raw_rows("SELECT objectId, coord_ra, coord_dec FROM object")
    ids = np.array([r[0] for r in rows])
    catalog = SkyCoord([r[1] for r in rows] * u.deg, [r[2] for r in rows] * u.deg)
    mine = SkyCoord(table["ra"], table["dec"])
    i, j, _, _ = search_around_sky(mine, catalog, RADIUS_DEG * u.deg)
    return {(int(table["id"][a]), int(ids[b])) for a, b in zip(i, j, strict=True)}


def votable_bytes(table: Table) -> bytes:
    out = io.BytesIO()
    writeto(from_table(table), out)
    return out.getvalue()


def test_sync_crossmatch_matches_astropy(served: Served) -> None:
    table = targets(served)
    result = pyvo.dal.TAPService(served.url).run_sync(CROSSMATCH, uploads={"targets": table})
    got = {(int(r["id"]), int(r["objectId"])) for r in result}
    want = expected(served, table)
    assert want and got == want
    assert all(float(r["sep"]) <= RADIUS_DEG for r in result)


def test_the_crossmatch_runs_per_chunk_on_the_workers(served: Served) -> None:
    upload = votable_to_arrow("targets", votable_bytes(targets(served)), max_rows=1000)
    result = served.service.engine.execute(CROSSMATCH, uploads=[upload])
    try:
        assert result.plan.shape == "chunk-local"
        sql = result.plan.chunk_queries[0].sql
        assert "BETWEEN u.dec -" in sql  # the declination band that makes it a range join
        result.reader.read_all()
    finally:
        result.close()
    assert not list((served.data / "tables" / "_uploads").glob("*"))  # staged files removed


def clustered_targets(served: Served) -> Table:
    """Positions within half a degree of one catalog object (a field, not the whole
    sky), and one row whose position is missing."""
    rows = served.raw_rows("SELECT coord_ra, coord_dec FROM object ORDER BY objectId LIMIT 1")
    ra0, dec0 = rows[0]
    rng = np.random.default_rng(5)
    ra = np.mod(ra0 + rng.uniform(-0.5, 0.5, 25), 360)
    dec = np.clip(dec0 + rng.uniform(-0.5, 0.5, 25), -90, 90)
    table = Table(
        {
            "id": np.arange(26),
            "ra": MaskedColumn(np.r_[ra, 0.0], mask=[False] * 25 + [True], unit=u.deg),
            "dec": MaskedColumn(np.r_[dec, 0.0], mask=[False] * 25 + [True], unit=u.deg),
        }
    )
    return table


def pairs_and_plan(served: Served, adql: str, table: Table) -> tuple[set[Any], QueryPlan]:
    """The (upload id, catalog id) pairs ``adql`` gives with ``table`` as TAP_UPLOAD.targets
    (through the engine, as /tap/sync runs it), and its plan."""
    upload = votable_to_arrow("targets", votable_bytes(table), max_rows=1000)
    result = served.service.engine.execute(adql, uploads=[upload])
    try:
        rows = result.reader.read_all()
        pairs = set(zip(rows.column(0).to_pylist(), rows.column(1).to_pylist(), strict=True))
        return pairs, result.plan
    finally:
        result.close()


def test_only_the_chunks_near_the_uploaded_positions_are_asked(served: Served) -> None:
    table = clustered_targets(served)
    got, plan = pairs_and_plan(served, CROSSMATCH, table)
    tasks = plan.chunk_queries[0].tasks
    chunks = served.service.engine.catalog().table("demo.Object").chunks
    note = next(n for n in plan.notes if "arcsec of a position of" in n)
    assert note.startswith(f"demo.Object: {len(tasks)} of {len(chunks)} chunks")
    assert 0 < len(tasks) < len(chunks) / 2
    # The same answer as astropy over the whole catalog (the masked row matches nothing).
    usable = table[~table["ra"].mask]
    want = expected(served, usable)
    assert want and got == want


SOURCE_CROSSMATCH = (  # detections near the uploaded positions: the child's own positions
    "SELECT u.id, s.sourceId FROM TAP_UPLOAD.targets AS u JOIN demo.Source AS s "
    "ON 1 = CONTAINS(POINT('ICRS', s.ra, s.dec), "
    f"CIRCLE('ICRS', u.ra, u.dec, {RADIUS_DEG}))"
)


def test_a_crossmatch_with_a_child_tables_own_positions(served: Served) -> None:
    """A child's rows sit in their director's chunk: its chunks are kept by the bounds of
    their rows' own positions, and each task matches in a declination band."""
    table = clustered_targets(served)
    got, plan = pairs_and_plan(served, SOURCE_CROSSMATCH, table)
    assert plan.shape == "chunk-local"
    assert "BETWEEN u.dec -" in plan.chunk_queries[0].sql
    # and a constant one, the upload's declinations widened by the radius: row groups skip
    lo, hi = (
        float(v)
        for v in re.findall(
            r"s\.dec BETWEEN ([-+0-9.e]+) AND ([-+0-9.e]+)", plan.chunk_queries[0].sql
        )[0]
    )
    decs = table["dec"][~table["dec"].mask]
    assert lo == pytest.approx(min(decs) - RADIUS_DEG) and hi == pytest.approx(
        max(decs) + RADIUS_DEG
    )
    # and a constant RA range, the field's, so row groups elsewhere in a chunk skip too
    assert "s.ra BETWEEN" in plan.chunk_queries[0].sql
    chunks = served.service.engine.catalog().table("demo.Source").chunks
    tasks = plan.chunk_queries[0].tasks
    note = next(n for n in plan.notes if "arcsec of a position of" in n)
    assert note.startswith(f"demo.Source: {len(tasks)} of {len(chunks)} chunks whose rows'")
    assert 0 < len(tasks) < len(chunks) / 2
    want = source_pairs(served, table[~table["ra"].mask])
    assert want and got == want


def source_pairs(served: Served, table: Table) -> set[tuple[int, int]]:
    """(upload id, sourceId) within the radius: astropy over every raw source."""
    sources = served.raw_rows("SELECT sourceId, ra, dec FROM source")
    catalog = SkyCoord([r[1] for r in sources] * u.deg, [r[2] for r in sources] * u.deg)
    i, j, _, _ = search_around_sky(SkyCoord(table["ra"], table["dec"]), catalog, RADIUS_DEG * u.deg)
    return {(int(table["id"][a]), int(sources[b][0])) for a, b in zip(i, j, strict=True)}


def test_a_child_crossmatch_across_ra_zero(served: Served) -> None:
    """A field on both sides of RA 0: the RA range is the two ends of the sky."""
    rows = served.raw_rows(
        "SELECT coord_ra, coord_dec FROM object WHERE coord_ra < 1 OR coord_ra > 359 "
        "ORDER BY objectId"
    )
    rng = np.random.default_rng(8)
    ra = np.mod(np.r_[[r[0] for r in rows], rng.uniform(-0.5, 0.5, 20)], 360)
    dec = np.r_[[r[1] for r in rows], rng.uniform(-0.5, 0.5, 20) + rows[0][1]]
    table = Table({"id": np.arange(len(ra)), "ra": ra * u.deg, "dec": dec * u.deg})
    got, plan = pairs_and_plan(served, SOURCE_CROSSMATCH, table)
    ends = re.findall(r"s\.ra >= (\S+) OR s\.ra <= (\S+)\)", plan.chunk_queries[0].sql)
    assert ends and float(ends[0][0]) > 358 and float(ends[0][1]) < 2
    want = source_pairs(served, table)
    assert want and got == want


def test_a_join_with_uploaded_ids_asks_only_their_chunks(served: Served) -> None:
    rows = served.raw_rows("SELECT objectId, r_psfMag FROM object ORDER BY objectId")
    wanted = {rows[i][0]: rows[i][1] for i in (3, 500, 1200, 2900)}
    ids = [*wanted, -1]  # and one id the catalog lacks
    table = Table({"id": np.array(ids, dtype=np.int64), "tag": [f"t{i}" for i in range(5)]})
    upload = votable_to_arrow("ids", votable_bytes(table), max_rows=1000)
    adql = (
        "SELECT o.objectId, o.r_psfMag, u.tag FROM demo.Object AS o "
        "JOIN TAP_UPLOAD.ids AS u ON o.objectId = u.id"
    )
    result = served.service.engine.execute(adql, uploads=[upload])
    try:
        got = sorted(tuple(r.values()) for r in result.reader.read_all().to_pylist())
        notes = result.plan.notes
    finally:
        result.close()
    tags = dict(zip(ids, table["tag"], strict=True))
    assert got == sorted((k, m, tags[k]) for k, m in wanted.items())
    assert notes[0] == "key join 1: 5 key(s) of tap_upload.ids written in"
    assert any(n.startswith("demo.Object: director index maps 5 key(s)") for n in notes)
    # Keys for most chunks: the join runs as written (reading each chunk once is cheaper).
    many = [r[0] for r in rows[::20]]
    upload = votable_to_arrow("ids", votable_bytes(Table({"id": many})), max_rows=1000)
    adql = "SELECT o.objectId FROM demo.Object AS o JOIN TAP_UPLOAD.ids AS u ON o.objectId = u.id"
    result = served.service.engine.execute(adql, uploads=[upload])
    try:
        got = sorted(r["objectId"] for r in result.reader.read_all().to_pylist())
        notes = result.plan.notes
    finally:
        result.close()
    assert got == sorted(many)
    assert not any(n.startswith("key join") for n in notes)


def test_async_crossmatch_with_an_upload(served: Served) -> None:
    table = targets(served, 30)
    result = pyvo.dal.TAPService(served.url).run_async(CROSSMATCH, uploads={"targets": table})
    assert {(int(r["id"]), int(r["objectId"])) for r in result} == expected(served, table)


def test_upload_errors_name_the_upload(served: Served) -> None:
    url = served.url + "/sync"
    query = {"QUERY": "SELECT * FROM TAP_UPLOAD.t", "UPLOAD": "t,param:f"}
    bad = httpx.post(url, data=query, files={"f": ("t.xml", b"<VOTABLE><nope")})
    assert "UPLOAD t: not a readable VOTable" in dali_error(bad, 400)
    missing = httpx.post(url, data=query, files={"g": ("t.xml", b"x")})
    assert "no part called 'f'" in dali_error(missing, 400)
    big = httpx.post(url, data=query, files={"f": ("t.xml", b"x" * 300_000)})
    assert "upload limit" in dali_error(big, 400)
    far = httpx.post(url, data={**query, "UPLOAD": "t,http://192.0.2.1/t.xml"})
    assert "only fetches uploads from its own host" in dali_error(far, 400)
    # The service still answers after all that.
    ok = httpx.post(
        url,
        data={**query, "RESPONSEFORMAT": "csv"},
        files={"f": ("t.xml", votable_bytes(Table({"x": [1, 2, 3]})))},
    )
    assert ok.status_code == 200 and ok.text.split() == ["x", "1", "2", "3"]


def test_uploads_are_queryable_like_tables(served: Served) -> None:
    table = Table({"name": ["a", "b"], "mag": [20.5, 21.0]})
    table["mag"].unit = u.mag
    result = pyvo.dal.TAPService(served.url).run_sync(
        "SELECT name, mag FROM TAP_UPLOAD.stars WHERE mag > 20.7", uploads={"stars": table}
    )
    assert [(str(r["name"]), float(r["mag"])) for r in result] == [("b", 21.0)]
    assert str(result.to_table()["mag"].unit) == "mag"


def test_upload_table_names_do_not_leak_between_queries(served: Served) -> None:
    response = httpx.post(served.url + "/sync", data={"QUERY": "SELECT * FROM TAP_UPLOAD.stars"})
    assert "TAP_UPLOAD.stars" in dali_error(response, 400)
