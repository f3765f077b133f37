"""The XML around the data: VOTable header with FIELDs and INFOs, trailer, error documents.

Documents declare VOTable 1.4 (namespace ``v1.3``, as that version
prescribes), the newest version current validators know. DALI 1.1: the
results are in ``<RESOURCE type="results">``, which starts with
``<INFO name="QUERY_STATUS" value="OK"/>``; a truncated result says
``OVERFLOW`` in a second INFO after the TABLE, and an error detected while the
rows were being written says ``ERROR`` there (so a streamed document still
tells the truth at its end).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from services.tap.formats.columns import ResultColumn

VOTABLE_NS = "http://www.ivoa.net/xml/VOTable/v1.3"
VOTABLE_VERSION = "1.4"

_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


@dataclass(frozen=True)
class ResultInfo:
    """What a result says about itself: INFO elements of a VOTable (and Parquet metadata)."""

    #: The ADQL text (``<INFO name="QUERY">``).
    query: str | None = None
    #: The query's (or job's) identifier (``<INFO name="QUERY_ID">``).
    query_id: str | None = None
    #: More ``(name, value)`` INFOs, in order.
    extra: tuple[tuple[str, str], ...] = ()

    def pairs(self) -> list[tuple[str, str]]:
        """Every INFO as ``(name, value)``."""
        out = []
        if self.query is not None:
            out.append(("QUERY", self.query))
        if self.query_id is not None:
            out.append(("QUERY_ID", self.query_id))
        return out + list(self.extra)


NO_INFO = ResultInfo()


def xml_text(value: str) -> str:
    """``value`` as XML character data (characters XML cannot hold become U+FFFD)."""
    value = _XML_INVALID.sub("\ufffd", value)
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def xml_attr(value: str) -> str:
    """``value`` as a double-quoted attribute value; line breaks and tabs survive parsing."""
    return (
        xml_text(value)
        .replace('"', "&quot;")
        .replace("\n", "&#10;")
        .replace("\r", "&#13;")
        .replace("\t", "&#9;")
    )


def _info(name: str, value: str, content: str | None = None) -> str:
    head = f'<INFO name="{xml_attr(name)}" value="{xml_attr(value)}"'
    return f"{head}>{xml_text(content)}</INFO>\n" if content else f"{head}/>\n"


def _start(status: str, info: ResultInfo, message: str | None = None) -> str:
    infos = "".join(_info(name, value) for name, value in info.pairs())
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<VOTABLE version="{VOTABLE_VERSION}" xmlns="{VOTABLE_NS}" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:schemaLocation="{VOTABLE_NS} {VOTABLE_NS}">\n'
        '<RESOURCE type="results">\n'
        f"{_info('QUERY_STATUS', status, message)}{infos}"
    )


def field_element(column: ResultColumn, *, magic_null: bool) -> str:
    """The FIELD of ``column``; ``magic_null`` adds ``<VALUES null>`` to integer columns."""
    attrs = [f'name="{xml_attr(column.name)}"', f'ID="{column.id}"']
    attrs.append(f'datatype="{column.datatype}"')
    for key in ("arraysize", "xtype", "unit", "ucd", "utype"):
        value = getattr(column, key)
        if value:
            attrs.append(f'{key}="{xml_attr(value)}"')
    body = ""
    if column.description:
        body += f"<DESCRIPTION>{xml_text(column.description)}</DESCRIPTION>"
    if magic_null and column.null_value is not None:
        body += f'<VALUES null="{column.null_value}"/>'
    head = f"<FIELD {' '.join(attrs)}"
    return f"{head}>{body}</FIELD>\n" if body else f"{head}/>\n"


def table_start(
    columns: Sequence[ResultColumn], info: ResultInfo, *, magic_null: bool = False
) -> str:
    """Everything up to and including the last FIELD."""
    fields = "".join(field_element(c, magic_null=magic_null) for c in columns)
    return f"{_start('OK', info)}<TABLE>\n{fields}"


def table_end(*, overflow: bool = False, error: str | None = None) -> str:
    """Close the TABLE and the document, with the trailing QUERY_STATUS if there is one."""
    status = ""
    if error is not None:
        status = _info("QUERY_STATUS", "ERROR", error)
    elif overflow:
        status = _info("QUERY_STATUS", "OVERFLOW")
    return f"</TABLE>\n{status}</RESOURCE>\n</VOTABLE>\n"


def error_document(message: str, *, info: ResultInfo = NO_INFO) -> bytes:
    """A DALI error document: a VOTable whose results RESOURCE says QUERY_STATUS=ERROR.

    ``message`` is the INFO's content (escaped; it may span lines); ``info``
    adds the query's own INFOs after it.
    """
    text = _start("ERROR", info, message or "error") + "</RESOURCE>\n</VOTABLE>\n"
    return text.encode("utf-8")
