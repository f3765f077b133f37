"""TAP request parameters: gathered case-insensitively, checked, with the settings' limits.

DALI 1.1: parameter names are case-insensitive, values are not; unknown
parameters are ignored. A POST may be ``application/x-www-form-urlencoded``
or ``multipart/form-data``; parameters in the URL of a POST count too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from starlette.datastructures import UploadFile
from starlette.requests import Request

from qcat.czar.uploads import UploadTable
from qcat.errors import QcatError
from services.form import request_pairs
from services.settings import ServiceSettings
from services.tap.formats import OutputFormat, UnknownFormat, find_format
from services.tap.upload import read_uploads

#: LANG values accepted (upper case); ADQL 2.0 queries are valid ADQL 2.1.
LANGUAGES = ("ADQL", "ADQL-2.0", "ADQL-2.1")
MAX_FORM_FIELDS = 100


class ParameterError(QcatError):
    """A request parameter is missing or has a value the service cannot use."""


Params = dict[str, str]


async def read_params(request: Request, *, max_chars: int) -> Params:
    """The request's parameters, upper-cased names -> value (URL and, for POST, the body).

    File parts of a multipart body are not read (see :func:`read_request`).
    """
    params, _ = await read_request(request, max_chars=max_chars, max_upload_bytes=None)
    return params


async def read_request(
    request: Request, *, max_chars: int, max_upload_bytes: int | None
) -> tuple[Params, dict[str, bytes]]:
    """The parameters (as :func:`read_params`) and the file parts of a multipart body.

    File parts are what ``UPLOAD=name,param:part`` refers to; one larger than
    ``max_upload_bytes`` is an error naming it (``None``: file parts are not
    read). A parameter given twice with different values is an error naming it.
    """
    parts: dict[str, bytes] = {}

    async def read_part(name: str, value: UploadFile) -> None:
        assert max_upload_bytes is not None
        data = await value.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise ParameterError(
                f"the uploaded part {name!r} is larger than the upload limit of "
                f"{max_upload_bytes:,} bytes (setting tap_upload_max_bytes)"
            )
        parts[name] = data

    pairs = await request_pairs(
        request,
        max_fields=MAX_FORM_FIELDS,
        max_files=MAX_FORM_FIELDS,
        max_part_bytes=max_chars * 4,
        error=ParameterError,
        on_file=None if max_upload_bytes is None else read_part,
    )
    return _fold(pairs), parts


def _fold(pairs: Iterable[tuple[str, str]]) -> Params:
    params: Params = {}
    for name, value in pairs:
        key = name.upper()
        if key in params and params[key] != value:
            raise ParameterError(f"parameter {key} is given more than once with different values")
        params[key] = value
    return params


@dataclass(frozen=True)
class SyncQuery:
    """A checked ``/sync`` request: what to run, how to encode it, how many rows."""

    lang: str
    query: str
    format: OutputFormat
    maxrec: int
    #: The UPLOAD parameter (``name,uri;...``), if any.
    upload: str | None = None


def sync_query(params: Params, settings: ServiceSettings) -> SyncQuery:
    """Check the parameters of a synchronous query; :class:`ParameterError` names the bad one."""
    request = params.get("REQUEST")
    if request is not None and request.lower() != "doquery":
        raise ParameterError(f"REQUEST={request} is not supported; use REQUEST=doQuery or omit it")
    lang = params.get("LANG", "ADQL").strip()
    if lang.upper() not in LANGUAGES:
        raise ParameterError(f"LANG={lang} is not supported; use one of {', '.join(LANGUAGES)}")
    query = params.get("QUERY", "")
    if not query.strip():
        raise ParameterError("QUERY is missing: give the ADQL query in the QUERY parameter")
    if len(query) > settings.tap_max_query_chars:
        raise ParameterError(
            f"QUERY has {len(query):,} characters, more than the limit of "
            f"{settings.tap_max_query_chars:,} (setting tap_max_query_chars)"
        )
    upload = params.get("UPLOAD") or None
    return SyncQuery(lang.upper(), query, response_format(params), maxrec(params, settings), upload)


def response_format(params: Params) -> OutputFormat:
    """RESPONSEFORMAT (TAP 1.1), else FORMAT (TAP 1.0), else the default format."""
    name = "RESPONSEFORMAT" if "RESPONSEFORMAT" in params else "FORMAT"
    try:
        return find_format(params.get(name))
    except UnknownFormat as e:
        raise ParameterError(f"{name}: {e}") from None


def maxrec(params: Params, settings: ServiceSettings) -> int:
    """MAXREC as a non-negative integer, cut to the hard limit; the default when absent."""
    value = params.get("MAXREC")
    if value is None or value.strip() == "":
        return min(settings.tap_maxrec_default, settings.tap_maxrec_hard)
    try:
        rows = int(value.strip())
    except ValueError:
        raise ParameterError(f"MAXREC must be a non-negative integer, not {value!r}") from None
    if rows < 0:
        raise ParameterError(f"MAXREC must be a non-negative integer, not {value!r}")
    return min(rows, settings.tap_maxrec_hard)


def uploads_of(
    query: SyncQuery, parts: dict[str, bytes], settings: ServiceSettings
) -> list[UploadTable]:
    """The tables the query's UPLOAD parameter names (none without one), within the limits."""
    if query.upload is None:
        return []
    return read_uploads(
        query.upload,
        parts,
        max_bytes=settings.tap_upload_max_bytes,
        max_rows=settings.tap_upload_max_rows,
    )
