"""Cells as text, a whole column at a time (Arrow compute kernels, no Python per row).

Shared by TABLEDATA, CSV and TSV. Numbers use the shortest text that reads
back to the same value; non-finite floats are ``NaN``, ``+Inf``, ``-Inf``
(VOTable's spelling); booleans ``T``/``F`` in TABLEDATA and ``true``/``false``
in CSV/TSV; arrays (geometry included) are their numbers separated by
blanks, as DALI serialises them; timestamps ISO 8601; blobs (rare) their
bytes as decimal numbers, the one case converted in Python. A null cell is
an empty string.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from services.tap.formats.columns import ResultColumn, column_values

Style = Literal["xml", "csv", "tsv"]

_CSV_SPECIAL = r'[",\r\n]|^\s|\s$|^$'


def cell_text(column: ResultColumn, values: pa.Array | pa.ChunkedArray, style: Style) -> pa.Array:
    """The column as ``large_string`` cells (null where the value is null)."""
    arr = column_values(column, values)
    if column.kind == "boolean":
        yes, no = ("T", "F") if style == "xml" else ("true", "false")
        return pc.if_else(arr, yes, no).cast(pa.large_string())
    if column.kind == "integer":
        return arr.cast(pa.large_string())
    if column.kind == "float":
        return _float_text(arr)
    if column.kind == "array":
        lists = arr if column.count is None else arr.cast(pa.large_list(arr.type.value_type))
        elements = lists.flatten()
        floating = pa.types.is_floating(elements.type)
        texts = _float_text(elements) if floating else elements.cast(pa.large_string())
        rebuilt = pa.ListArray.from_arrays(
            _offsets(lists),
            texts.fill_null("NaN" if floating else "").cast(pa.string()),
            mask=lists.is_null(),
        )
        joined = pc.binary_join(rebuilt, " ").cast(pa.large_string())
        if style == "xml" and floating and column.count is not None:
            # A null fixed-size array is all NaN, as in BINARY: validators
            # take an empty TD of a point or circle for a malformed value.
            joined = joined.fill_null(" ".join(["NaN"] * column.count))
        return joined
    if column.kind == "blob":
        return pa.array(
            [None if v is None else " ".join(str(b) for b in v) for v in arr.to_pylist()],
            pa.large_string(),
        )
    return _escape(arr, style)


def _offsets(lists: pa.Array) -> pa.Array:
    """Offsets of ``lists`` relative to its flattened (null-free) values."""
    lengths = lists.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.array(offsets)


def _float_text(arr: pa.Array) -> pa.Array:
    text = arr.cast(pa.large_string())
    if not pc.any(pc.or_(pc.is_nan(arr), pc.is_inf(arr))).as_py():
        return text
    for raw, spelled in (("nan", "NaN"), ("-inf", "-Inf"), ("inf", "+Inf")):
        text = pc.if_else(pc.equal(text, raw), spelled, text)
    return text.cast(pa.large_string())


def _escape(arr: pa.Array, style: Style) -> pa.Array:
    if style == "xml":
        arr = pc.replace_substring_regex(arr, "[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]", "\ufffd")
        for raw, escaped in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;")):
            arr = pc.replace_substring(arr, raw, escaped)
        return arr
    if style == "tsv":
        # text/tab-separated-values has no quoting: tabs and line breaks become blanks.
        return pc.replace_substring_regex(arr, "[\t\r\n]", " ")
    # Empty strings are quoted, so that they differ from nulls (empty fields).
    quote = pa.scalar('"', pa.large_string())
    quoted = pc.binary_join_element_wise(
        quote, pc.replace_substring(arr, '"', '""'), quote, pa.scalar("", pa.large_string())
    )
    return pc.if_else(pc.match_substring_regex(arr, _CSV_SPECIAL), quoted, arr)


def header_text(names: list[str], style: Style, line_end: str) -> str:
    """The CSV/TSV header line."""
    if style == "tsv":
        return "\t".join(" ".join(n.split()) for n in names) + line_end
    cells = [
        f'"{n.replace(chr(34), chr(34) * 2)}"' if any(c in n for c in ',"\r\n') else n
        for n in names
    ]
    return ",".join(cells) + line_end


def join_rows(cells: list[pa.Array], *, prefix: str, separator: str, suffix: str) -> bytes:
    """The rows as one UTF-8 text: ``prefix cell separator cell ... suffix`` per row."""

    def text(value: str) -> pa.Scalar:
        return pa.scalar(value, pa.large_string())

    row = pc.binary_join_element_wise(
        *cells, text(separator), null_handling="replace", null_replacement=""
    )
    if prefix or suffix:
        row = pc.binary_join_element_wise(text(prefix), row, text(suffix), text(""))
    if len(row) == 0:
        return b""
    return text_bytes(row)


def text_bytes(texts: pa.Array) -> bytes:
    """The concatenated UTF-8 of a ``large_string`` array (nulls contribute nothing)."""
    offsets, data = _string_buffers(texts)
    if data is None:
        return b""
    start, end = int(offsets[0]), int(offsets[-1])
    return data.slice(start, end - start).to_pybytes()


def _string_buffers(texts: pa.Array) -> tuple[np.ndarray, pa.Buffer | None]:
    buffers = texts.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64)[
        texts.offset : texts.offset + len(texts) + 1
    ]
    return offsets, buffers[2]
