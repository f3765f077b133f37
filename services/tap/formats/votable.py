"""Streamed VOTable documents in the TABLEDATA, BINARY and BINARY2 serialisations.

The header (with the FIELDs) goes out once the first batch is known, the
rows one record batch at a time, and the trailer (with ``OVERFLOW`` after
the TABLE when MAXREC cut the result) at the end. Binary rows are base64
encoded in whole batches; the one or two bytes that do not fill a base64
quantum wait for the next batch.

If reading the rows fails after the header went out, the DATA is closed,
``<INFO name="QUERY_STATUS" value="ERROR">`` with the message follows the
TABLE, the document ends well-formed, and then the error is raised to the
caller (which has already sent a complete document to the client).
"""

from __future__ import annotations

import binascii
from collections.abc import Iterator, Sequence

from qcat.czar.resolve import OutputColumn
from services.tap.formats.binary import RowEncoder
from services.tap.formats.cells import cell_text, join_rows
from services.tap.formats.columns import ResultColumn, result_columns
from services.tap.formats.source import BatchSource
from services.tap.formats.vodoc import ResultInfo, table_end, table_start

SERIALIZATIONS = ("TABLEDATA", "BINARY", "BINARY2")


def write_votable(
    serialization: str,
    source: BatchSource,
    columns: Sequence[OutputColumn],
    info: ResultInfo,
) -> Iterator[bytes]:
    """The document's bytes, in pieces of about one record batch."""
    if serialization not in SERIALIZATIONS:
        raise ValueError(f"unknown VOTable serialization {serialization!r}")
    described = result_columns(source.schema, columns, source.first())
    yield table_start(described, info, magic_null=serialization == "BINARY").encode("utf-8")
    yield f"<DATA><{_data_element(serialization)}>\n".encode()
    try:
        if serialization == "TABLEDATA":
            yield from _tabledata(source, described)
        else:
            yield from _binary(source, RowEncoder(described, null_flags=serialization == "BINARY2"))
    except Exception as e:
        message = str(e) or type(e).__name__
        yield (_data_end(serialization) + table_end(error=message)).encode("utf-8")
        raise
    yield (_data_end(serialization) + table_end(overflow=source.overflow)).encode("utf-8")


def _data_element(serialization: str) -> str:
    if serialization == "TABLEDATA":
        return "TABLEDATA"
    return f'{serialization}><STREAM encoding="base64"'


def _data_end(serialization: str) -> str:
    if serialization == "TABLEDATA":
        return "</TABLEDATA></DATA>\n"
    return f"</STREAM></{serialization}></DATA>\n"


def _tabledata(source: BatchSource, described: list[ResultColumn]) -> Iterator[bytes]:
    for batch in source:
        cells = [cell_text(c, batch.column(i), "xml") for i, c in enumerate(described)]
        yield join_rows(cells, prefix="<TR><TD>", separator="</TD><TD>", suffix="</TD></TR>\n")


def _binary(source: BatchSource, encoder: RowEncoder) -> Iterator[bytes]:
    carry = b""
    try:
        for batch in source:
            raw = encoder.encode(batch)
            if carry:
                raw = carry + raw
            whole = len(raw) - len(raw) % 3
            carry = raw[whole:]
            if whole:
                yield binascii.b2a_base64(memoryview(raw)[:whole], newline=True)
    except Exception:
        # The rows already encoded end with the carried bytes: send them whole.
        if carry:
            yield binascii.b2a_base64(carry, newline=True)
        raise
    if carry:
        yield binascii.b2a_base64(carry, newline=True)
