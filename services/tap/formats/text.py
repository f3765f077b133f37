"""CSV (RFC 4180, with a header line) and tab-separated values, streamed per record batch.

Lines end with CRLF, as both MIME types ask. A null is an empty field; a CSV
field is quoted only when it holds a comma, a quote, a line break or
leading/trailing blanks; TSV cannot quote, so tabs and line breaks inside
values become blanks. Neither format can say that the result was
truncated (DALI 1.1 section 4.4.1): MAXREC still limits the rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from qcat.czar.resolve import OutputColumn
from services.tap.formats.cells import Style, cell_text, header_text, join_rows
from services.tap.formats.columns import result_columns
from services.tap.formats.source import BatchSource

LINE_END = "\r\n"


def write_text(
    style: Style, source: BatchSource, columns: Sequence[OutputColumn]
) -> Iterator[bytes]:
    """``csv`` or ``tsv`` bytes: the header line, then one piece per record batch."""
    described = result_columns(source.schema, columns, source.first())
    separator = "\t" if style == "tsv" else ","
    yield header_text([c.name for c in described], style, LINE_END).encode("utf-8")
    for batch in source:
        cells = [cell_text(c, batch.column(i), style) for i, c in enumerate(described)]
        yield join_rows(cells, prefix="", separator=separator, suffix=LINE_END)
