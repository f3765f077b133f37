"""The TAP service over HTTP, spoken to as real clients do: pyvo, httpx, raw sockets, STILTS.

A real uvicorn server (in a thread of the test process, so the tests can look
at the service's state) serves a small demo catalog ingested into many
chunks; answers are compared with DuckDB over the raw Parquet files.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import subprocess
import time
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import pyvo
from astropy.io import votable
from astropy.table import Table
from pyvo.dal.exceptions import DALOverflowWarning, DALQueryError, DALServiceError
from pyvo.io.vosi import parse_availability, parse_capabilities

from qcat.czar.adql.functions import FUNCTIONS
from qcat.czar.dispatch import QueryFailed
from services.app import create_app
from services.service import Service
from services.settings import ServiceSettings
from services.tap.formats import FORMATS, OutputFormat
from services.tap.query_run import QueryRun
from tests.service_support import Served, dali_error, demo_service, uvicorn_thread
from tests.xsd import assert_schema_valid

THRESHOLD = 500
MAXREC_DEFAULT = 10_000
MAXREC_HARD = 20_000
CLIENT_QUERIES = 2
#: A director-child join: MAXREC_HARD rows of ~80 columns, tens of MB as TABLEDATA.
BIG_QUERY = "SELECT * FROM demo.Object AS o JOIN demo.Source AS s ON o.objectId = s.objectId"
BRIGHT = (
    "SELECT objectId, coord_ra, coord_dec, r_psfMag, refExtendedness FROM demo.Object "
    "WHERE r_psfMag < 21 ORDER BY objectId"
)
BRIGHT_RAW = (
    "SELECT objectId, coord_ra, coord_dec, r_psfMag, refExtendedness FROM object "
    "WHERE r_psfMag < 21 ORDER BY objectId"
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    settings = ServiceSettings.defaults(
        tap_maxrec_default=MAXREC_DEFAULT,
        tap_maxrec_hard=MAXREC_HARD,
        tap_client_queries=CLIENT_QUERIES,
        tap_sync_timeout_s=120.0,
    )
    with demo_service(tmp_path_factory.mktemp("tap"), settings, threshold=THRESHOLD) as served:
        yield served


@pytest.fixture
def tap(served: Served) -> pyvo.dal.TAPService:
    return pyvo.dal.TAPService(served.url)


def sync(served: Served, method: str = "POST", **params: Any) -> httpx.Response:
    if method == "GET":
        return httpx.get(served.url + "/sync", params=params, timeout=60)
    return httpx.post(served.url + "/sync", data=params, timeout=60)


def rows_of(table: Table, names: list[str]) -> list[tuple[Any, ...]]:
    return [tuple(_plain(row[n]) for n in names) for row in table]


def _plain(value: Any) -> Any:
    if np.ma.is_masked(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


# -- queries through pyvo -----------------------------------------------------------------


def test_pyvo_run_sync_matches_duckdb(served: Served, tap: pyvo.dal.TAPService) -> None:
    result = tap.run_sync(BRIGHT)
    got = rows_of(result.to_table(), ["objectId", "coord_ra", "coord_dec", "r_psfMag"])
    want = [r[:4] for r in served.raw_rows(BRIGHT_RAW)]
    assert 0 < len(got) < MAXREC_DEFAULT
    assert got == want
    table = result.to_table()
    assert str(table["r_psfMag"].unit) == "mag"
    assert result.fieldname_with_ucd("pos.eq.ra;meta.main") == "coord_ra"


def test_count_and_aggregates(served: Served, tap: pyvo.dal.TAPService) -> None:
    result = tap.run_sync(
        "SELECT band, COUNT(*) AS n, AVG(psFlux) AS mean FROM demo.Source GROUP BY band "
        "ORDER BY band"
    )
    got = rows_of(result.to_table(), ["band", "n", "mean"])
    want = served.raw_rows(
        "SELECT band, count(*), avg(psFlux) FROM source GROUP BY band ORDER BY band"
    )
    assert [g[:2] for g in got] == [w[:2] for w in want]
    assert np.allclose([g[2] for g in got], [w[2] for w in want], rtol=1e-9)


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f.is_votable], ids=lambda f: f.name)
def test_pyvo_each_votable_serialization(
    served: Served, tap: pyvo.dal.TAPService, fmt: OutputFormat
) -> None:
    result = tap.run_sync(BRIGHT, responseformat=fmt.aliases[-1])
    got = rows_of(result.to_table(), ["objectId", "r_psfMag", "refExtendedness"])
    want = [(r[0], r[3], r[4]) for r in served.raw_rows(BRIGHT_RAW)]
    assert got == want


def read_any(fmt: OutputFormat, body: bytes) -> Table:
    if fmt.is_votable:
        return votable.parse_single_table(io.BytesIO(body)).to_table()
    if fmt.name == "parquet":
        return Table(pq.read_table(pa.BufferReader(body)).to_pydict())
    if fmt.name == "fits":
        return Table.read(io.BytesIO(body), format="fits")
    delimiter = "\t" if fmt.name == "tsv" else ","
    return Table.read(body.decode(), format="ascii.csv", delimiter=delimiter)


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_every_responseformat(served: Served, fmt: OutputFormat) -> None:
    for alias in (fmt.aliases[0], fmt.mime_type):
        response = sync(served, QUERY=BRIGHT, RESPONSEFORMAT=alias)
        assert response.status_code == 200
        assert response.headers["content-type"] == fmt.mime_type
        assert response.headers["content-disposition"].endswith(f'{fmt.extension}"')
        table = read_any(fmt, response.content)
        got = rows_of(table, ["objectId", "r_psfMag"])
        want = [(r[0], r[3]) for r in served.raw_rows(BRIGHT_RAW)]
        assert len(got) == len(want)
        assert [g[0] for g in got] == [w[0] for w in want]
        assert np.allclose([g[1] for g in got], [w[1] for w in want], rtol=1e-6)


def test_maxrec_overflow_in_pyvo(served: Served, tap: pyvo.dal.TAPService) -> None:
    query = "SELECT sourceId FROM demo.Source ORDER BY sourceId"
    ids = [r[0] for r in served.raw_rows("SELECT sourceId FROM source ORDER BY sourceId")]
    assert len(ids) > MAXREC_HARD
    # cut by the service's limits: pyvo warns
    with pytest.warns(DALOverflowWarning, match="server limits"):
        result = tap.run_sync(query)
    assert [int(v) for v in result.to_table()["sourceId"]] == ids[:MAXREC_DEFAULT]
    with pytest.warns(DALOverflowWarning, match="maxrec=1000000000"):
        result = tap.run_sync(query, maxrec=1_000_000_000)
    assert len(result) == MAXREC_HARD
    # cut where the client asked: OVERFLOW, which pyvo expects and does not warn about
    with warnings.catch_warnings():
        warnings.simplefilter("error", DALOverflowWarning)
        result = tap.run_sync(query, maxrec=7)
        exact = tap.run_sync("SELECT TOP 7 sourceId FROM demo.Source", maxrec=7)
    assert [int(v) for v in result.to_table()["sourceId"]] == ids[:7]
    assert result.query_status == "OVERFLOW" and exact.query_status == "OK"


def test_maxrec_default_hard_limit_and_zero(served: Served) -> None:
    n_sources = served.raw_rows("SELECT count(*) FROM source")[0][0]
    assert n_sources > MAXREC_HARD
    query = "SELECT sourceId FROM demo.Source"
    for maxrec, expected in ((None, MAXREC_DEFAULT), ("1000000000", MAXREC_HARD), ("0", 0)):
        params = {"QUERY": query} | ({"MAXREC": maxrec} if maxrec else {})
        response = sync(served, **params)
        assert response.status_code == 200
        doc = votable.parse(io.BytesIO(response.content))
        assert len(doc.get_first_table().array) == expected
        statuses = [i.value for i in doc.resources[0].infos if i.name == "QUERY_STATUS"]
        assert statuses[-1] == "OVERFLOW"
        entry = served.log_entry(response.headers["x-qcat-query-id"])
        assert (entry["rows"], entry["outcome"], entry["maxrec"]) == (
            expected,
            "overflow",
            expected,
        )


# -- parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "MULTIPART"])
def test_parameter_names_any_case_and_extras_ignored(served: Served, method: str) -> None:
    params = {
        "qUeRy": "SELECT TOP 3 objectId FROM demo.Object ORDER BY objectId",
        "lang": "adql-2.1",
        "Request": "doQuery",
        "responseFormat": "csv",
        "maxRec": "2",
        "RUNID": "test-42",
        "whatever": "ignored",
    }
    url = served.url + "/sync"
    if method == "GET":
        response = httpx.get(url, params=params, timeout=60)
    elif method == "POST":
        response = httpx.post(url, data=params, timeout=60)
    else:
        files = {k: (None, v) for k, v in params.items()}
        response = httpx.post(url, files=files, timeout=60)
        assert response.request.headers["content-type"].startswith("multipart/form-data")
    assert response.status_code == 200, response.text
    ids = [r[0] for r in served.raw_rows("SELECT objectId FROM object ORDER BY objectId LIMIT 2")]
    assert response.text.splitlines() == ["objectId", *map(str, ids)]


def test_format_parameter_and_lang_variants(served: Served) -> None:
    for lang in ("ADQL", "ADQL-2.0", "adql"):
        response = sync(served, "GET", QUERY="SELECT COUNT(*) AS n FROM demo.Object", LANG=lang)
        assert response.status_code == 200
    response = sync(served, QUERY="SELECT COUNT(*) AS n FROM demo.Object", FORMAT="tsv")
    assert response.text.splitlines() == ["n", "3000"]


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"LANG": "SQL"}, "LANG=SQL"),
        ({"LANG": "PQL"}, "LANG=PQL"),
        ({"RESPONSEFORMAT": "application/pdf"}, "RESPONSEFORMAT"),
        ({"FORMAT": "excel"}, "'excel'"),
        ({"MAXREC": "ten"}, "MAXREC"),
        ({"MAXREC": "-1"}, "MAXREC"),
        ({"MAXREC": "1.5"}, "MAXREC"),
        ({"QUERY": ""}, "QUERY is missing"),
        ({"REQUEST": "getCapabilities"}, "REQUEST=getCapabilities"),
        ({"UPLOAD": "t,param:t"}, "UPLOAD"),
    ],
)
def test_bad_parameters_are_dali_errors(
    served: Served, params: dict[str, str], needle: str
) -> None:
    full = {"QUERY": "SELECT TOP 1 objectId FROM demo.Object"} | params
    for method in ("GET", "POST"):
        message = dali_error(sync(served, method, **full), 400)
        assert needle in message


def test_same_parameter_twice(served: Served) -> None:
    url = served.url + "/sync?MAXREC=5"
    response = httpx.post(url, data={"QUERY": "SELECT 1 FROM demo.Object", "maxrec": "6"})
    assert "MAXREC" in dali_error(response, 400)


def test_query_too_long(served: Served) -> None:
    padding = " " * served.service.settings.tap_max_query_chars
    message = dali_error(sync(served, QUERY="SELECT 1 FROM demo.Object" + padding), 400)
    assert "tap_max_query_chars" in message


def test_adql_errors_with_position_and_suggestion(served: Served, tap: pyvo.dal.TAPService) -> None:
    message = dali_error(sync(served, QUERY="SELECT objectId\nFROM demo.Object\nWHERE"), 400)
    assert message.startswith("line 3, column ")
    message = dali_error(sync(served, QUERY="SELECT g_psfMg FROM demo.Object"), 400)
    assert "g_psfmg" in message.lower() and "did you mean g_psfMag" in message
    message = dali_error(sync(served, QUERY="SELECT x FROM demo.NoSuchTable"), 400)
    assert "NoSuchTable" in message or "nosuchtable" in message
    with pytest.raises((DALQueryError, DALServiceError), match="g_psfMag"):
        tap.run_sync("SELECT g_psfMg FROM demo.Object")
    # the service keeps answering
    assert tap.run_sync("SELECT COUNT(*) AS n FROM demo.Object").to_table()["n"][0] == 3000


def test_errors_are_logged(served: Served) -> None:
    sync(served, QUERY="SELECT nope FROM demo.Object")
    sync(served, QUERY="SELECT 1 FROM demo.Object", LANG="SQL")
    log = served.log()
    failed = [e for e in log if e["query"] == "SELECT nope FROM demo.Object"][-1]
    assert (failed["status"], failed["outcome"]) == (400, "failed")
    assert "nope" in failed["error"]
    rejected = [e for e in log if e["lang"] == "SQL"][-1]
    assert (rejected["status"], rejected["outcome"], rejected["query_id"]) == (
        400,
        "rejected",
        None,
    )


def test_query_log_entries(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="qcat.queries")
    response = sync(served, QUERY=BRIGHT, RESPONSEFORMAT="csv")
    query_id = response.headers["x-qcat-query-id"]
    entry = served.log_entry(query_id)
    n = len(served.raw_rows(BRIGHT_RAW))
    assert entry["client"] == "127.0.0.1"
    assert entry["query"] == BRIGHT
    assert (entry["rows"], entry["outcome"], entry["status"]) == (n, "completed", 200)
    assert entry["format"] == "csv" and entry["lang"] == "ADQL"
    assert entry["duration_s"] > 0 and entry["error"] is None
    assert entry["time"].endswith("+00:00")
    logged = [json.loads(r.getMessage()) for r in caplog.records if r.name == "qcat.queries"]
    assert any(e["query_id"] == query_id for e in logged)


# -- other resources ----------------------------------------------------------------------


def test_unknown_paths_and_methods(served: Served) -> None:
    assert "/tap/nothing" in dali_error(httpx.get(served.url + "/nothing"), 404)
    assert "/tap/sync/x" in dali_error(httpx.get(served.url + "/sync/x"), 404)
    assert "PUT" in dali_error(httpx.put(served.url + "/sync", content=b"x"), 405)
    assert httpx.get(served.url.removesuffix("/tap") + "/nothing").status_code == 404
    landing = httpx.get(served.url, follow_redirects=True)
    assert landing.status_code == 200 and "capabilities" in landing.text


def test_capabilities(served: Served) -> None:
    response = httpx.get(served.url + "/capabilities")
    assert response.status_code == 200
    assert_schema_valid(response.content)
    capabilities = parse_capabilities(io.BytesIO(response.content))
    by_id = {c.standardid: c for c in capabilities}
    assert "ivo://ivoa.net/std/VOSI#availability" in by_id
    assert "ivo://ivoa.net/std/VOSI#capabilities" in by_id
    examples_url = by_id["ivo://ivoa.net/std/DALI#examples"].interfaces[0].accessurls[0]
    assert examples_url.content == served.url + "/examples"
    tables_url = by_id["ivo://ivoa.net/std/VOSI#tables-1.1"].interfaces[0].accessurls[0]
    assert tables_url.content == served.url + "/tables"
    tap = by_id["ivo://ivoa.net/std/TAP"]
    assert tap.interfaces[0].accessurls[0].content == served.url
    (adql,) = tap.languages
    assert "ivo://ivoa.net/std/ADQL#v2.1" in [v.ivo_id for v in adql.versions]
    udfs = adql.get_feature_list("ivo://ivoa.net/std/TAPRegExt#features-udf")
    declared = {f.form for f in udfs}
    assert declared == {s.signature for s in FUNCTIONS.values() if s.signature}
    assert adql.get_udf("ivo_healpix_index") is not None
    geometry = adql.get_feature_list("ivo://ivoa.net/std/TAPRegExt#features-adqlgeo")
    assert {"CONTAINS", "POINT", "CIRCLE", "POLYGON", "DISTANCE"} <= {f.form for f in geometry}
    for feature_type, form in [
        ("features-adql-string", "ILIKE"),
        ("features-adql-sets", "INTERSECT"),
        ("features-adql-common-table", "WITH"),
        ("features-adql-offset", "OFFSET"),
        ("features-adql-type", "CAST"),
        ("features-adql-conditional", "COALESCE"),
        ("features-adql-unit", "IN_UNIT"),
    ]:
        assert adql.get_feature(f"ivo://ivoa.net/std/TAPRegExt#{feature_type}", form)
    assert [f.mime for f in tap.outputformats] == [f.mime_type for f in FORMATS]
    assert tap.outputlimit.default.content == MAXREC_DEFAULT
    assert tap.outputlimit.hard.content == MAXREC_HARD
    assert tap.outputlimit.hard.unit == "row"
    settings = served.service.settings
    assert tap.executionduration.default == settings.tap_execution_duration_s
    assert tap.executionduration.hard == settings.tap_execution_duration_max_s
    assert {m.ivo_id for m in tap.uploadmethods} == {
        "ivo://ivoa.net/std/TAPRegExt#upload-inline",
        "ivo://ivoa.net/std/TAPRegExt#upload-http",
    }
    assert tap.uploadlimit.hard.content == settings.tap_upload_max_bytes
    client = pyvo.dal.TAPService(served.url)
    assert (client.maxrec, client.hardlimit) == (MAXREC_DEFAULT, MAXREC_HARD)


def test_availability_and_healthz(served: Served) -> None:
    response = httpx.get(served.url + "/availability")
    assert response.status_code == 200
    assert_schema_valid(response.content)
    availability = parse_availability(io.BytesIO(response.content))
    assert availability.available
    assert "2 of 2" in availability.notes[0]
    health = httpx.get(served.url.removesuffix("/tap") + "/healthz").json()
    assert (health["status"], health["workers_alive"], health["workers_total"]) == ("ok", 2, 2)
    pids = {w.pid for w in served.service.workers.workers} if served.service.workers else set()
    assert {w["pid"] for w in health["workers"]} == pids


def test_taplint(served: Served) -> None:
    """STILTS taplint with every stage: metadata, capabilities, sync, async, UWS, uploads."""
    stages = "TMV TME TMS TMC CPV CAP AVV QGE QPO QAS UWS MDQ OBS LOC UPL EXA"
    done = subprocess.run(
        ["stilts", "taplint", f"tapurl={served.url}", f"stages={stages}", "report=EW"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    known = (
        # ADQL 2.1 (section 4.7) defines this feature type; taplint 3.4.7 predates it.
        ("E-CAP-KEYX", "features-adql-conditional"),
    )
    problems = [
        line
        for line in done.stdout.splitlines()
        if line.startswith(("E-", "W-"))
        and not any(line.startswith(code) and text in line for code, text in known)
    ]
    assert done.returncode == 0 and not problems, done.stdout[-3000:] + done.stderr[-2000:]
    for stage in stages.split():
        assert f"Section {stage}" in done.stdout


def test_tables(served: Served) -> None:
    tables = pyvo.dal.TAPService(served.url).tables
    names = {t.name.lower() for t in tables}
    assert {"demo.object", "demo.source", "tap_schema.tables", "tap_schema.columns"} <= names
    obj = tables["demo.Object"]
    assert "r_psfMag" in [c.name for c in obj.columns]
    for path in ("/tables", "/tables?DETAIL=min", "/tables/demo.Object"):
        response = httpx.get(served.url + path)
        assert response.status_code == 200, path
        assert_schema_valid(response.content)
    assert b"r_psfMag" not in httpx.get(served.url + "/tables?detail=min").content
    assert "demo.Object" in dali_error(httpx.get(served.url + "/tables/demo.Objet"), 404)
    assert "detail" in dali_error(httpx.get(served.url + "/tables?detail=all"), 400)


def test_examples(served: Served) -> None:
    response = httpx.get(served.url + "/examples")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xhtml+xml")
    root = ET.fromstring(response.content)
    queries = [e.text for e in root.iter() if e.get("property") == "query"]
    assert queries and all(queries)
    # the first example runs on this catalog
    result = sync(served, QUERY=queries[0], RESPONSEFORMAT="csv")
    assert result.status_code == 200 and len(result.text.splitlines()) > 1


def test_tap_schema_is_queryable(served: Served, tap: pyvo.dal.TAPService) -> None:
    result = tap.run_sync(
        "SELECT column_name FROM TAP_SCHEMA.columns WHERE table_name = 'demo.Object'"
    )
    names = {str(v) for v in result.to_table()["column_name"]}
    assert {"objectId", "coord_ra", "r_psfMag"} <= names


# -- streaming, disconnects, failures, overload -------------------------------------------


def open_stream(served: Served, params: dict[str, str], rcvbuf: int = 32_768) -> socket.socket:
    """POST a query on a raw socket with a small receive buffer (no read ahead)."""
    url = urlsplit(served.url)
    assert url.hostname is not None and url.port is not None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(60)
    sock.connect((url.hostname, url.port))
    body = urlencode(params).encode()
    head = (
        f"POST {url.path}/sync HTTP/1.1\r\nHost: {url.netloc}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and the body bytes already received."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        assert piece, "connection closed before the headers"
        data += piece
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, rest


def read_to_end(sock: socket.socket, data: bytes) -> bytes:
    while piece := sock.recv(1 << 20):
        data += piece
    return data


def dechunk(data: bytes) -> tuple[bytes, bool]:
    """The body of a chunked transfer, and whether its last (empty) chunk arrived."""
    body = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return bytes(body), True
        if len(data) < size:
            return bytes(body + data), False
        body += data[:size]
        data = data[size + 2 :]
    return bytes(body), False


def test_result_streams_before_the_query_finishes(served: Served) -> None:
    params = {"QUERY": BIG_QUERY, "RESPONSEFORMAT": "votable/td", "MAXREC": str(MAXREC_HARD)}
    with open_stream(served, params) as sock:
        status, headers, first = read_head(sock)
        assert status == 200 and headers["transfer-encoding"] == "chunked"
        query_id = headers["x-qcat-query-id"]
        time.sleep(0.5)
        # bytes have arrived, yet the query still runs: its slot is held, it is not logged
        assert served.service.limiter.running() == 1
        assert query_id not in {e["query_id"] for e in served.log()}
        body, complete = dechunk(read_to_end(sock, first))
    assert complete and len(body) > 10_000_000  # far more than socket buffers hold
    table = votable.parse_single_table(io.BytesIO(body)).to_table()
    assert len(table) == MAXREC_HARD
    entry = served.log_entry(query_id)
    assert (entry["outcome"], entry["rows"]) == ("overflow", MAXREC_HARD)
    served.wait_idle()


def test_client_disconnect_cancels_the_query(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    cancelled: list[str] = []
    engine = served.service.engine
    real_cancel = engine.cancel

    def spy(query_id: str) -> None:
        cancelled.append(query_id)
        real_cancel(query_id)

    monkeypatch.setattr(engine, "cancel", spy)
    query_id = _left_mid_answer(served)
    entry = served.log_entry(query_id)
    assert entry["outcome"] == "disconnected"
    assert query_id in cancelled
    served.wait_idle()
    assert httpx.post(served.url + "/sync", data={"QUERY": BRIGHT}).status_code == 200


def test_a_disconnect_is_logged_as_such_when_cancelling_lags(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a disconnect the server drops what is sent without an error; the
    response must stop at once, not run the query to MAXREC while the cancel
    waits for a thread (as on a loaded machine), then log it as an overflow."""
    real_client_gone = QueryRun.client_gone

    def slow_client_gone(self: QueryRun) -> None:
        time.sleep(3.0)
        real_client_gone(self)

    monkeypatch.setattr(QueryRun, "client_gone", slow_client_gone)
    entry = served.log_entry(_left_mid_answer(served))
    assert entry["outcome"] == "disconnected", entry
    served.wait_idle()


def _left_mid_answer(served: Served) -> str:
    """Start a large answer, read its head, and disconnect while it streams; its query id."""
    params = {"QUERY": BIG_QUERY, "RESPONSEFORMAT": "votable/td", "MAXREC": str(MAXREC_HARD)}
    with open_stream(served, params) as sock:
        status, headers, _ = read_head(sock)
        assert status == 200
        time.sleep(0.3)
        assert served.service.limiter.running() == 1
    return headers["x-qcat-query-id"]


def _failing_after_first_batch(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every query fail after its first batch, as when a worker dies mid-stream."""
    engine = served.service.engine
    real_execute = engine.execute

    def execute(adql: str, *, query_id: str | None = None, uploads: Any = ()) -> Any:
        result = real_execute(adql, query_id=query_id)
        reader = result.reader

        def batches() -> Iterator[pa.RecordBatch]:
            yield reader.read_next_batch()
            raise QueryFailed("query stopped, no result returned: worker grpc://test died")

        result.reader = pa.RecordBatchReader.from_batches(reader.schema, batches())
        return result

    monkeypatch.setattr(engine, "execute", execute)


def test_error_after_streaming_started_votable(
    served: Served, monkeypatch: pytest.MonkeyPatch, tap: pyvo.dal.TAPService
) -> None:
    _failing_after_first_batch(served, monkeypatch)
    query = "SELECT sourceId FROM demo.Source"
    response = sync(served, QUERY=query, RESPONSEFORMAT="votable/td")
    assert response.status_code == 200
    doc = votable.parse(io.BytesIO(response.content))
    statuses = [(i.value, i.content) for i in doc.resources[0].infos if i.name == "QUERY_STATUS"]
    assert statuses[0][0] == "OK"
    assert statuses[-1][0] == "ERROR" and "worker grpc://test died" in statuses[-1][1]
    with pytest.raises(DALQueryError, match="worker grpc://test died"):
        tap.run_sync(query)
    entry = served.log_entry(response.headers["x-qcat-query-id"])
    assert entry["outcome"] == "failed" and "grpc://test" in entry["error"]


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_error_after_streaming_started_cuts_other_formats(
    served: Served, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    _failing_after_first_batch(served, monkeypatch)
    with open_stream(served, {"QUERY": "SELECT sourceId FROM demo.Source", "FORMAT": fmt}) as s:
        status, headers, first = read_head(s)
        assert status == 200
        body, complete = dechunk(read_to_end(s, first))
    assert not complete and body.startswith(b"sourceId")
    with pytest.raises(httpx.RemoteProtocolError):
        sync(served, QUERY="SELECT sourceId FROM demo.Source", FORMAT=fmt)
    entry = served.log_entry(headers["x-qcat-query-id"])
    assert entry["outcome"] == "failed"


def test_error_before_the_first_bytes_gets_a_status(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Parquet and FITS writers read ahead (a row group, the whole spool) before any byte
    _failing_after_first_batch(served, monkeypatch)
    for fmt in ("parquet", "fits"):
        response = sync(served, QUERY="SELECT sourceId FROM demo.Source", FORMAT=fmt)
        assert "worker grpc://test died" in dali_error(response, 500)


def test_early_failure_gets_a_status(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = served.service.engine

    def execute(adql: str, *, query_id: str | None = None, uploads: Any = ()) -> Any:
        raise QueryFailed("query stopped, no result returned: a chunk task failed (test)")

    monkeypatch.setattr(engine, "execute", execute)
    message = dali_error(sync(served, QUERY="SELECT 1 FROM demo.Object"), 500)
    assert "a chunk task failed (test)" in message


def test_too_many_queries_from_one_client(served: Served) -> None:
    params = {"QUERY": BIG_QUERY, "RESPONSEFORMAT": "votable/td", "MAXREC": str(MAXREC_HARD)}
    held = [open_stream(served, params) for _ in range(CLIENT_QUERIES)]
    try:
        for sock in held:
            assert read_head(sock)[0] == 200
        # the status resources answer while the queries run
        root = served.url.removesuffix("/tap")
        for url in (root + "/healthz", served.url + "/availability", served.url + "/capabilities"):
            assert httpx.get(url, timeout=5).status_code == 200
        assert httpx.get(root + "/healthz").json()["queries_running"] == CLIENT_QUERIES
        response = sync(served, QUERY=BRIGHT)
        message = dali_error(response, 503)
        assert "tap_client_queries" in message
        assert response.headers["retry-after"]
    finally:
        for sock in held:
            sock.close()
    served.wait_idle()
    assert sync(served, QUERY=BRIGHT).status_code == 200


def test_dead_workers_give_503(served: Served) -> None:
    """A service whose only worker died: queries get 503, health says down, availability false."""
    service = Service.start(served.data, workers=1, worker_memory_limit="256MB")
    with service, uvicorn_thread(create_app(service)) as root:
        assert service.workers is not None
        worker = service.workers.workers[0].proc
        worker.kill()
        worker.wait(10)
        response = httpx.post(root + "/tap/sync", data={"QUERY": BRIGHT}, timeout=60)
        message = dali_error(response, 503)
        assert "do not answer" in message and response.headers["retry-after"]
        health = httpx.get(root + "/healthz", timeout=30)
        assert health.status_code == 503 and health.json()["status"] == "down"
        doc = parse_availability(io.BytesIO(httpx.get(root + "/tap/availability").content))
        assert not doc.available and "0 of 1" in doc.notes[0]
