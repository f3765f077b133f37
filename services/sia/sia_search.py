"""One SIA search: the ADQL prefilter through the query engine, the exact footprint test on
the rows it returns, MAXREC, and the encoded result.

Runs in a worker thread (every step blocks). The engine's result is read
batch by batch; each batch is cut to the images whose footprint really meets
a POS region, and reading stops as soon as one image more than MAXREC has
been kept (that extra image is how an overflow is known, as in TAP), which
also stops the query on the workers. The kept rows then go through the TAP
result writer, so FIELDs, xtypes and the OVERFLOW status are the same as a
TAP answer's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from services.querylog import QueryLogEntry
from services.service import Service
from services.sia.sia_adql import sia_adql
from services.sia.sia_overlap import overlap_mask
from services.sia.sia_params import SiaQuery
from services.tap.formats import ResultInfo, write_result

ENDPOINT = "sia/query"


@dataclass(frozen=True)
class SearchResult:
    """An encoded SIA answer and what its log entry needs."""

    query_id: str
    adql: str
    body: bytes
    rows: int
    overflow: bool


def run_search(service: Service, query: SiaQuery, query_id: str, base_url: str) -> SearchResult:
    """Run ``query`` as ``query_id`` and encode its answer (relative URLs made absolute
    against ``base_url``)."""
    adql = sia_adql(query)
    result = service.engine.execute(adql, query_id=query_id)
    exhausted = False
    try:
        kept: list[pa.RecordBatch] = []
        count = 0
        reader = result.reader
        while query.maxrec > 0 and count <= query.maxrec:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                exhausted = True
                break
            batch = exact_rows(batch, query)
            if batch.num_rows:
                kept.append(batch)
                count += batch.num_rows
        schema = reader.schema
    finally:
        if not exhausted:
            service.engine.cancel(query_id)  # cut short: stop what still runs on the workers
        result.close()
    # One batch: encoding costs about 1 ms per batch whatever its size, and the kept rows
    # (few: MAXREC bounds them) can come as many small batches, one per row group.
    table = pa.Table.from_batches(kept, schema=schema).combine_chunks()
    table_reader = pa.RecordBatchReader.from_batches(schema, table.to_batches())
    pieces = write_result(
        query.response_format,
        table_reader,
        result.columns,
        maxrec=query.maxrec,
        info=ResultInfo(query_id=query_id),
        base_url=base_url,
    )
    body = b"".join(pieces)
    return SearchResult(query_id, adql, body, min(count, query.maxrec), count > query.maxrec)


def exact_rows(batch: pa.RecordBatch, query: SiaQuery) -> pa.RecordBatch:
    """The rows of ``batch`` whose footprint meets a POS region (all rows without POS)."""
    if not query.pos or batch.num_rows == 0:
        return batch
    names = batch.schema.names
    mask = overlap_mask(
        query.pos,
        _floats(batch.column(names.index("s_ra"))),
        _floats(batch.column(names.index("s_dec"))),
        _floats(batch.column(names.index("s_fov"))),
        batch.column(names.index("s_region")).to_pylist(),
    )
    return batch.filter(pa.array(mask))


def _floats(column: pa.Array) -> np.ndarray:
    return np.asarray(pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False), dtype=float)


def log_entry(
    *,
    started: float,
    client: str,
    query: SiaQuery | None,
    text: str | None,
    status: int,
    outcome: str,
    query_id: str | None = None,
    rows: int | None = None,
    error: str | None = None,
) -> QueryLogEntry:
    """The query-log line of one SIA request; ``text`` is the ADQL run (the request's
    parameters when it was refused before a query existed)."""
    return QueryLogEntry(
        time=datetime.fromtimestamp(started, UTC).isoformat(timespec="milliseconds"),
        query_id=query_id,
        client=client,
        endpoint=ENDPOINT,
        lang="ADQL" if query_id is not None else None,
        format=query.response_format.name if query is not None else None,
        maxrec=query.maxrec if query is not None else None,
        query=text,
        status=status,
        outcome=outcome,
        rows=rows,
        duration_s=round(time.time() - started, 6),
        error=error,
    )
