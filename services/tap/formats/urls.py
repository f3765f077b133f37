"""Relative URLs in results made absolute: ``/datalink/links?...`` -> ``https://host/...``.

The catalog stores links to the service's own resources relative to it
(ObsCore ``access_url`` is ``/datalink/links?ID=...``), so the data does not
depend on the host name the service is reached by. Every result the service
writes turns the values starting with one ``/`` of the columns whose UCD
is ``meta.ref.url`` into absolute URLs against the service's base URL
(``services.urls.base_url``). Values that are already absolute, and
network-path references (``//host/...``), are left alone. The work is
done on whole Arrow columns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from qcat.czar.resolve import OutputColumn

URL_UCD = "meta.ref.url"


def url_columns(schema: pa.Schema, columns: Sequence[OutputColumn]) -> list[int]:
    """Positions of the text columns whose catalog UCD names a URL (``meta.ref.url``)."""
    out = []
    for i, field in enumerate(schema):
        meta = columns[i] if i < len(columns) else None
        spec = meta.column if meta is not None else None
        if spec is None or not spec.ucd:
            continue
        words = {w.strip().lower() for w in spec.ucd.split(";")}
        t = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
        if URL_UCD in words and (pa.types.is_string(t) or pa.types.is_large_string(t)):
            out.append(i)
    return out


def absolute(values: pa.Array | pa.ChunkedArray, base_url: str) -> pa.Array | pa.ChunkedArray:
    """``values`` with every one starting with a single ``/`` prefixed by ``base_url``."""
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    relative = pc.and_(pc.starts_with(values, "/"), pc.invert(pc.starts_with(values, "//")))
    joined = pc.binary_join_element_wise(pa.scalar(base_url, values.type), values, "")
    return pc.if_else(relative, joined, values)


def absolute_urls(
    reader: pa.RecordBatchReader, columns: Sequence[OutputColumn], base_url: str | None
) -> pa.RecordBatchReader:
    """``reader`` with the relative URLs of its URL columns made absolute against ``base_url``.

    Without a base URL, or without URL columns, ``reader`` itself is returned.
    """
    if not base_url:
        return reader
    positions = url_columns(reader.schema, columns)
    if not positions:
        return reader
    base = base_url.rstrip("/")
    schema = reader.schema
    for i in positions:
        t = schema.field(i).type
        if pa.types.is_dictionary(t):
            schema = schema.set(i, schema.field(i).with_type(t.value_type))

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            arrays = list(batch.columns)
            for i in positions:
                arrays[i] = absolute(arrays[i], base)
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)

    return pa.RecordBatchReader.from_batches(schema, batches())
