"""TAP_UPLOAD: tables a client sends with its query (TAP 1.1 section 4.5, DALI UPLOAD).

``UPLOAD=name,uri[;name,uri...]`` names each table and says where it is:
``param:part`` for a part of the multipart request itself (what pyvo,
astroquery and TOPCAT send), or an ``http(s)`` URL. The service fetches URLs
from loopback hosts only: fetching arbitrary URLs for a client would turn the
service into a proxy into the network it runs in.

Each upload is a VOTable. It becomes an Arrow table and a :class:`TableSpec`
(the FIELDs' datatypes, units, UCDs and descriptions), to be queried as
``TAP_UPLOAD.name``. Every failure names the upload (and the column) at fault.
"""

from __future__ import annotations

import io
import ipaddress
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
from astropy.io import votable
from astropy.io.votable.exceptions import VOTableSpecWarning, VOWarning

from qcat.czar.adql.keywords import is_reserved
from qcat.czar.uploads import UploadTable
from qcat.errors import QcatError
from qcat.schema import ColumnSpec, TableSpec

#: Schema name every uploaded table lives in.
UPLOAD_SCHEMA = "TAP_UPLOAD"

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")

#: VOTable datatypes (scalars) and the Felis datatype an upload column gets.
_VOTABLE_TO_FELIS = {
    "boolean": "boolean",
    "bit": "boolean",
    "unsignedByte": "short",
    "short": "short",
    "int": "int",
    "long": "long",
    "float": "float",
    "double": "double",
    "char": "string",
    "unicodeChar": "unicode",
}


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect could lead away from loopback: treat it as the error it is here."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        raise urllib.error.HTTPError(newurl, code, "redirects are not followed", headers, fp)


_NO_REDIRECTS = urllib.request.build_opener(_RefuseRedirects)


class UploadError(QcatError):
    """An upload is missing, too large, unreachable or not a usable VOTable."""


def parse_upload_parameter(value: str) -> list[tuple[str, str]]:
    """``[(name, uri), ...]`` from an UPLOAD value; :class:`UploadError` if malformed."""
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for item in (v.strip() for v in value.split(";")):
        if not item:
            continue
        name, sep, uri = item.partition(",")
        name, uri = name.strip(), uri.strip()
        if not sep or not uri:
            raise UploadError(f"UPLOAD: {item!r} is not 'name,uri'")
        if not _NAME.match(name) or is_reserved(name):
            raise UploadError(
                f"UPLOAD: {name!r} is not a valid table name (a letter, then letters, "
                "digits or '_', and not an ADQL reserved word)"
            )
        if name.lower() in seen:
            raise UploadError(f"UPLOAD: the table name {name!r} is used twice")
        seen.add(name.lower())
        pairs.append((name, uri))
    return pairs


def read_uploads(
    value: str,
    parts: Mapping[str, bytes],
    *,
    max_bytes: int,
    max_rows: int,
    fetch_timeout_s: float = 30.0,
) -> list[UploadTable]:
    """Every table an UPLOAD value names, read from ``parts`` (by part name) or loopback URLs."""
    tables = []
    for name, uri in parse_upload_parameter(value):
        if uri.startswith("param:"):
            part = uri[len("param:") :]
            if part not in parts:
                raise UploadError(
                    f"UPLOAD {name}: the request has no part called {part!r} "
                    f"(parts: {', '.join(sorted(parts)) or 'none'})"
                )
            data = parts[part]
            if len(data) > max_bytes:
                raise UploadError(_too_big(name, max_bytes))
        else:
            data = fetch(name, uri, max_bytes=max_bytes, timeout_s=fetch_timeout_s)
        tables.append(votable_to_arrow(name, data, max_rows=max_rows))
    return tables


def fetch(name: str, uri: str, *, max_bytes: int, timeout_s: float) -> bytes:
    """The bytes at an http(s) ``uri`` on a loopback host, at most ``max_bytes`` of them."""
    url = urllib.parse.urlsplit(uri)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise UploadError(f"UPLOAD {name}: {uri!r} is neither 'param:part' nor an http(s) URL")
    if not _is_loopback(url.hostname):
        raise UploadError(
            f"UPLOAD {name}: this service only fetches uploads from its own host "
            f"(loopback), not from {url.hostname!r}; send the table inline as a "
            "multipart part instead"
        )
    try:
        with _NO_REDIRECTS.open(uri, timeout=timeout_s) as response:
            data = response.read(max_bytes + 1)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise UploadError(f"UPLOAD {name}: cannot read {uri}: {e}") from None
    if len(data) > max_bytes:
        raise UploadError(_too_big(name, max_bytes))
    return bytes(data)


def votable_to_arrow(name: str, data: bytes, *, max_rows: int) -> UploadTable:
    """The first table of the VOTable ``data`` as Arrow plus its column metadata."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", VOWarning)
            warnings.simplefilter("ignore", VOTableSpecWarning)
            document = votable.parse(io.BytesIO(data), verify="ignore")
        vot = document.get_first_table()
    except Exception as e:  # astropy raises many kinds for malformed input
        raise UploadError(f"UPLOAD {name}: not a readable VOTable: {_first_line(e)}") from None
    if vot.array is None or len(vot.array) > max_rows:
        rows = 0 if vot.array is None else len(vot.array)
        raise UploadError(
            f"UPLOAD {name}: {rows:,} rows; uploads may have at most {max_rows:,} rows"
        )
    columns: list[ColumnSpec] = []
    arrays: list[pa.Array] = []
    seen: set[str] = set()
    for field in vot.fields:
        column_name = field.name
        if not _NAME.match(column_name) or column_name.lower() in seen:
            raise UploadError(
                f"UPLOAD {name}: column {column_name!r} is not a usable ADQL column name "
                "(letters, digits and '_', starting with a letter, unique ignoring case)"
            )
        seen.add(column_name.lower())
        datatype = _felis_type(name, field)
        columns.append(
            ColumnSpec(
                name=column_name,
                datatype=datatype,
                nullable=True,
                description=(field.description or None),
                unit=str(field.unit) if field.unit is not None else None,
                ucd=field.ucd or None,
            )
        )
        values = vot.array[field.ID or field.name]
        try:
            arrays.append(_arrow_column(values, datatype))
        except pa.ArrowInvalid as e:
            raise UploadError(f"UPLOAD {name}: column {column_name!r}: {_first_line(e)}") from None
    spec = TableSpec(
        schema_name=UPLOAD_SCHEMA,
        name=name,
        columns=tuple(columns),
        description=f"Table uploaded with the query as {UPLOAD_SCHEMA}.{name}",
    )
    schema = pa.schema([pa.field(c.name, c.arrow_type) for c in columns])
    return UploadTable(spec, pa.Table.from_arrays(arrays, schema=schema))


def _felis_type(name: str, field: votable.tree.Field) -> str:
    datatype = field.datatype
    arraysize = field.arraysize
    if datatype in ("char", "unicodeChar"):
        # DALI timestamps are ISO 8601 strings; as timestamps they compare and sort as times.
        return (
            "timestamp"
            if (field.xtype or "").lower() == "timestamp"
            else _VOTABLE_TO_FELIS[datatype]
        )
    if arraysize not in (None, "1"):
        raise UploadError(
            f"UPLOAD {name}: column {field.name!r} is an array ({datatype}[{arraysize}]); "
            "uploads may only have scalar columns"
        )
    if datatype not in _VOTABLE_TO_FELIS:
        raise UploadError(
            f"UPLOAD {name}: column {field.name!r} has datatype {datatype!r}, which uploads "
            "do not support"
        )
    return _VOTABLE_TO_FELIS[datatype]


def _arrow_column(values: np.ndarray, datatype: str) -> pa.Array:
    target = ColumnSpec("x", datatype).arrow_type
    mask = np.ma.getmaskarray(values)
    data = np.ma.getdata(values)
    if pa.types.is_string(target) or pa.types.is_timestamp(target):
        texts = [
            None if m else (v.decode() if isinstance(v, bytes) else str(v))
            for v, m in zip(data.tolist(), mask.tolist(), strict=True)
        ]
        if pa.types.is_timestamp(target):  # ISO 8601, UTC: Arrow wants no zone suffix
            stripped = [t.strip().removesuffix("Z") or None if t else None for t in texts]
            return pa.array(stripped, type=pa.string()).cast(target)
        return pa.array(texts, type=target)
    if pa.types.is_floating(target):
        mask = mask | np.isnan(data.astype(np.float64))
    return pa.array(data, mask=mask, type=target, from_pandas=False)


def _is_loopback(host: str) -> bool:
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(
        ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses
    )


def _too_big(name: str, max_bytes: int) -> str:
    return f"UPLOAD {name}: larger than the upload limit of {max_bytes:,} bytes"


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
