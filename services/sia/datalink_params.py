"""Parameters of a ``{links}`` request (DataLink 1.1 section 2.1, DALI 1.1).

Names are case-insensitive; ID may be repeated (GET query string, POST form,
or both); RESPONSEFORMAT and MAXREC are single-valued. Unknown parameters are
ignored. A bad value is a :class:`LinksUsageError` whose message starts with
``UsageFault:`` as DataLink section 3.4 asks.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from qcat.errors import QcatError
from services.form import request_pairs
from services.sia.datalink_links import unique_ids

#: Most parameters one request may carry (IDs beyond the ID limit are counted, not resolved).
MAX_PARAMS = 50_000
#: Largest single parameter value read from a POST body (bytes).
MAX_VALUE_BYTES = 64 * 1024
#: RESPONSEFORMAT values meaning the standard output (MIME parameters stripped).
VOTABLE_FORMATS = ("votable", "application/x-votable+xml", "text/xml")


class LinksUsageError(QcatError):
    """The request's parameters cannot be used (HTTP 400, ``UsageFault``)."""


@dataclass(frozen=True)
class LinksRequest:
    """A checked ``{links}`` request."""

    #: The ID values, each once, in the order given.
    ids: list[str]
    #: The most rows to return (None: no MAXREC given).
    maxrec: int | None


async def read_links_request(request: Request) -> LinksRequest:
    """The request's IDs and MAXREC; :class:`LinksUsageError` names a bad parameter."""
    pairs = await request_pairs(
        request,
        max_fields=MAX_PARAMS + 1,
        max_files=0,
        max_part_bytes=MAX_VALUE_BYTES,
        error=lambda message: LinksUsageError(f"UsageFault: {message}"),
    )
    if len(pairs) > MAX_PARAMS:
        raise LinksUsageError(
            f"UsageFault: the request has {len(pairs):,} parameters, more than {MAX_PARAMS:,}"
        )
    ids = [value for name, value in pairs if name.upper() == "ID"]
    single = _single_valued(pairs, ("RESPONSEFORMAT", "MAXREC"))
    check_response_format(single.get("RESPONSEFORMAT"))
    return LinksRequest(unique_ids(ids), parse_maxrec(single.get("MAXREC")))


def _single_valued(pairs: list[tuple[str, str]], names: tuple[str, ...]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in pairs:
        key = name.upper()
        if key not in names:
            continue
        if key in found and found[key] != value:
            raise LinksUsageError(
                f"UsageFault: {key} is given more than once with different values"
            )
        found[key] = value
    return found


def check_response_format(value: str | None) -> None:
    """Accept the VOTable output (DataLink 1.1 section 2.1.2); anything else is an error."""
    if value is None or not value.strip():
        return
    base, *params = (part.strip().lower() for part in value.split(";"))
    serialization = [p for p in params if p.replace(" ", "").startswith("serialization=")]
    tabledata = all(p.replace(" ", "") == "serialization=tabledata" for p in serialization)
    if base not in VOTABLE_FORMATS or not tabledata:
        raise LinksUsageError(
            f"UsageFault: RESPONSEFORMAT={value} is not supported; "
            "use votable (application/x-votable+xml, TABLEDATA)"
        )


def parse_maxrec(value: str | None) -> int | None:
    """MAXREC as a non-negative integer (None when absent or empty)."""
    if value is None or not value.strip():
        return None
    try:
        rows = int(value.strip())
    except ValueError:
        rows = -1
    if rows < 0:
        raise LinksUsageError(f"UsageFault: MAXREC must be a non-negative integer, not {value!r}")
    return rows
