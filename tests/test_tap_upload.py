"""TAP_UPLOAD parsing: VOTables into Arrow with their metadata, and every way it can fail."""

from __future__ import annotations

import http.server
import io
import threading
import warnings
from collections.abc import Iterator

import astropy.units as u
import numpy as np
import pytest
from astropy.io.votable import from_table, writeto
from astropy.io.votable.exceptions import VOWarning
from astropy.table import MaskedColumn, Table

from services.tap.upload import (
    UploadError,
    parse_upload_parameter,
    read_uploads,
    votable_to_arrow,
)

LIMITS = {"max_bytes": 1_000_000, "max_rows": 1000}


def votable_bytes(table: Table, fmt: str = "binary2") -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings():
        # astropy warns about names it must mangle into IDs; pytest-xdist cannot
        # carry its VOWarning objects between processes.
        warnings.simplefilter("ignore", VOWarning)
        vot = from_table(table)
    vot.get_first_table().format = fmt
    for field in vot.get_first_table().fields:
        if field.datatype in ("short", "int", "long"):
            field.values.null = -999  # TABLEDATA needs a null value for masked integers
    writeto(vot, out)
    return out.getvalue()


def sample() -> Table:
    t = Table()
    t["ra"] = np.array([10.0, 20.5, 359.9])
    t["ra"].unit = u.deg
    t["ra"].description = "right ascension"
    t["ra"].meta["ucd"] = "pos.eq.ra"
    t["dec"] = MaskedColumn([-5.0, 0.0, 89.0], mask=[False, True, False], unit="deg")
    t["id"] = MaskedColumn(np.array([1, 2, 3], dtype=np.int64), mask=[False, False, True])
    t["name"] = ["a", "bé", "c"]
    t["flag"] = [True, False, True]
    return t


@pytest.mark.parametrize("fmt", ["tabledata", "binary", "binary2"])
def test_a_votable_becomes_arrow_with_metadata(fmt: str) -> None:
    up = votable_to_arrow("mine", votable_bytes(sample(), fmt), max_rows=10)
    assert up.spec.qualified_name == "TAP_UPLOAD.mine"
    cols = {c.name: c for c in up.spec.columns}
    assert cols["ra"].datatype == "double" and cols["ra"].unit == "deg"
    assert cols["ra"].description == "right ascension"
    assert cols["id"].datatype == "long" and cols["flag"].datatype == "boolean"
    assert up.table.column("ra").to_pylist() == [10.0, 20.5, 359.9]
    assert up.table.column("dec").to_pylist() == [-5.0, None, 89.0]
    assert up.table.column("name").to_pylist() == ["a", "bé", "c"]
    assert up.table.column("flag").to_pylist() == [True, False, True]
    assert up.table.column("id").to_pylist() == [1, 2, None]


def test_upload_parameter_syntax() -> None:
    assert parse_upload_parameter("a,param:x; b,http://127.0.0.1/t.xml") == [
        ("a", "param:x"),
        ("b", "http://127.0.0.1/t.xml"),
    ]
    for bad, message in [
        ("a", "not 'name,uri'"),
        ("1a,param:x", "not a valid table name"),
        ("select,param:x", "not a valid table name"),
        ("a,param:x;A,param:y", "used twice"),
    ]:
        with pytest.raises(UploadError, match=message):
            parse_upload_parameter(bad)


def test_inline_parts_and_their_failures() -> None:
    data = votable_bytes(sample())
    [up] = read_uploads("t,param:f", {"f": data}, **LIMITS)
    assert up.table.num_rows == 3
    with pytest.raises(UploadError, match="UPLOAD t: the request has no part called 'g'"):
        read_uploads("t,param:g", {"f": data}, **LIMITS)
    with pytest.raises(UploadError, match="UPLOAD t: larger than the upload limit"):
        read_uploads("t,param:f", {"f": data}, max_bytes=100, max_rows=10)
    with pytest.raises(UploadError, match="at most 2 rows"):
        read_uploads("t,param:f", {"f": data}, max_bytes=10**6, max_rows=2)
    with pytest.raises(UploadError, match="UPLOAD t: not a readable VOTable"):
        read_uploads("t,param:f", {"f": b"<VOTABLE><oops"}, **LIMITS)


def test_unusable_columns_are_named() -> None:
    t = Table()
    t["pos"] = np.zeros((2, 2))
    with pytest.raises(UploadError, match="column 'pos' is an array"):
        votable_to_arrow("t", votable_bytes(t), max_rows=10)
    t = Table()
    t["a b"] = [1, 2]
    with pytest.raises(UploadError, match="column 'a b' is not a usable ADQL column name"):
        votable_to_arrow("t", votable_bytes(t), max_rows=10)


@pytest.fixture
def http_server() -> Iterator[tuple[str, dict[str, tuple[int, bytes, str]]]]:
    routes: dict[str, tuple[int, bytes, str]] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body, location = routes.get(self.path, (404, b"", ""))
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", routes
    finally:
        server.shutdown()
        server.server_close()


def test_uploads_by_url_only_from_loopback(
    http_server: tuple[str, dict[str, tuple[int, bytes, str]]],
) -> None:
    base, routes = http_server
    routes["/t.xml"] = (200, votable_bytes(sample()), "")
    routes["/away"] = (302, b"", "http://192.0.2.1/t.xml")
    [up] = read_uploads(f"t,{base}/t.xml", {}, **LIMITS)
    assert up.table.num_rows == 3
    with pytest.raises(UploadError, match="only fetches uploads from its own host"):
        read_uploads("t,http://192.0.2.1/t.xml", {}, **LIMITS)
    with pytest.raises(UploadError, match="cannot read"):
        read_uploads(f"t,{base}/away", {}, **LIMITS)  # a redirect is not followed
    with pytest.raises(UploadError, match="cannot read"):
        read_uploads(f"t,{base}/missing", {}, **LIMITS)
    with pytest.raises(UploadError, match="larger than the upload limit"):
        read_uploads(f"t,{base}/t.xml", {}, max_bytes=50, max_rows=10)
    with pytest.raises(UploadError, match="neither 'param:part' nor an http"):
        read_uploads("t,file:///etc/passwd", {}, **LIMITS)


def test_timestamps_become_times_and_bad_ones_are_named() -> None:
    t = Table({"when": ["2024-01-02T03:04:05Z", "2024-01-02T03:04:05.5", "2024-02-29"]})
    vot = from_table(t)
    vot.get_first_table().fields[0].xtype = "timestamp"
    out = io.BytesIO()
    writeto(vot, out)
    up = votable_to_arrow("t", out.getvalue(), max_rows=10)
    assert up.spec.columns[0].datatype == "timestamp"
    assert [str(v) for v in up.table.column("when").to_pylist()] == [
        "2024-01-02 03:04:05",
        "2024-01-02 03:04:05.500000",
        "2024-02-29 00:00:00",
    ]
    vot.get_first_table().array["when"][0] = "yesterday"
    bad = io.BytesIO()
    writeto(vot, bad)
    with pytest.raises(UploadError, match="UPLOAD t: column 'when'"):
        votable_to_arrow("t", bad.getvalue(), max_rows=10)
