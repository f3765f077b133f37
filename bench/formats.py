"""Result-writer benchmark: VOTable BINARY2 (qcat's writer) against Parquet (pyarrow) and
astropy's VOTable writer, on the same in-memory result.

    uv run python -m bench.formats [--rows 1000000] [--astropy-rows 200000]

The result has 10 columns of mixed types, as a catalog query returns them:
an int64 key, two float64 coordinates, float32 magnitudes and an int32
count with nulls, an int16, a boolean with nulls, a variable-length string
column with nulls, a float64 flux and a timestamp. It is fed to each writer
as 64k-row record batches (the czar's batch size) and the bytes are
discarded, so the figures are encoding rates. Every format qcat writes is
timed too. astropy is given the same rows as an astropy Table (the
conversion is not timed) and writes BINARY2 to memory; it is slow, so it
gets ``--astropy-rows`` rows and the rate is compared per row.

The target (docs/formats.md) is BINARY2 at >= 50% of the Parquet rate.
Figures are recorded by hand in ``docs/formats.md``.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from qcat.czar.resolve import OutputColumn
from services.tap.formats import FORMATS, find_format, write_result

BATCH_ROWS = 65_536


def make_result(rows: int, seed: int = 1) -> pa.Table:
    """The benchmark's result table."""
    rng = np.random.default_rng(seed)

    def nulls(fraction: float) -> np.ndarray:
        return rng.random(rows) < fraction

    words = np.array(["star", "galaxy", "qso", "unknown", "blended-source", "artefact"])
    names = np.char.add(
        words[rng.integers(0, len(words), rows)], rng.integers(0, 10**6, rows).astype(str)
    )
    return pa.table(
        {
            "objectId": pa.array(np.arange(rows, dtype=np.int64) * 7919 + 10**12),
            "ra": pa.array(rng.uniform(0, 360, rows)),
            "dec": pa.array(np.degrees(np.arcsin(rng.uniform(-1, 1, rows)))),
            "g_mag": pa.array(rng.normal(22, 2, rows).astype(np.float32), mask=nulls(0.1)),
            "r_mag": pa.array(rng.normal(21, 2, rows).astype(np.float32), mask=nulls(0.05)),
            "nDetections": pa.array(rng.integers(0, 500, rows).astype(np.int32), mask=nulls(0.2)),
            "flags": pa.array(rng.integers(0, 2**15, rows).astype(np.int16)),
            "extended": pa.array(rng.random(rows) < 0.3, mask=nulls(0.1)),
            "class": pa.array(names, mask=nulls(0.05)),
            "psfFlux": pa.array(rng.lognormal(5, 2, rows)),
        }
    )


def reader_of(table: pa.Table) -> pa.RecordBatchReader:
    return pa.RecordBatchReader.from_batches(table.schema, table.to_batches(BATCH_ROWS))


def timed(run: Callable[[], int], repeat: int) -> tuple[float, int]:
    """Best wall time of ``repeat`` runs and the bytes written."""
    best, size = float("inf"), 0
    for _ in range(repeat):
        start = time.perf_counter()
        size = run()
        best = min(best, time.perf_counter() - start)
    return best, size


def qcat_writer(table: pa.Table, name: str) -> Callable[[], int]:
    fmt = find_format(name)
    columns = [OutputColumn(n) for n in table.column_names]
    return lambda: sum(len(p) for p in write_result(fmt, reader_of(table), columns))


def pyarrow_parquet(table: pa.Table) -> Callable[[], int]:
    def run() -> int:
        sink = pa.BufferOutputStream()
        with pq.ParquetWriter(sink, table.schema) as writer:
            for batch in table.to_batches(BATCH_ROWS):
                writer.write_batch(batch)
        return len(sink.getvalue())

    return run


def astropy_binary2(table: pa.Table) -> Callable[[], int]:
    from astropy.io.votable import from_table
    from astropy.table import MaskedColumn, Table

    columns = []
    for name in table.column_names:
        values = table.column(name)
        mask = values.is_null().to_numpy(zero_copy_only=False)
        if pa.types.is_string(values.type):
            data = np.array(values.fill_null("").to_pylist(), dtype=bytes)
        elif pa.types.is_boolean(values.type):
            data = values.fill_null(False).to_numpy(zero_copy_only=False)
        else:
            data = values.fill_null(0).to_numpy(zero_copy_only=False)
        columns.append(MaskedColumn(data, name=name, mask=mask))
    document = from_table(Table(columns))
    document.get_first_table().format = "binary2"

    def run() -> int:
        out = io.BytesIO()
        document.to_xml(out)
        return out.tell()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--astropy-rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    table = make_result(args.rows)
    print(f"{args.rows:,} rows x {table.num_columns} columns, {table.nbytes / 1e6:.0f} MB in Arrow")
    rates: dict[str, float] = {}
    runs: list[tuple[str, Callable[[], int], int]] = [
        ("pyarrow Parquet writer", pyarrow_parquet(table), args.rows),
        *((f"qcat {f.name}", qcat_writer(table, f.aliases[0]), args.rows) for f in FORMATS),
    ]
    if args.astropy_rows:
        small = table.slice(0, args.astropy_rows)
        runs.append(("astropy VOTable BINARY2", astropy_binary2(small), args.astropy_rows))
    for label, run, rows in runs:
        seconds, size = timed(run, 1 if label.startswith("astropy") else args.repeat)
        rates[label] = rows / seconds
        print(
            f"{label:28s} {seconds:7.3f} s  {rows / seconds / 1e6:7.2f} Mrow/s  "
            f"{size / seconds / 1e6:7.1f} MB/s out  ({size / 1e6:.1f} MB)"
        )
    binary2 = rates["qcat votable-binary2"]
    parquet = rates["pyarrow Parquet writer"]
    print(f"\nBINARY2 / Parquet rate: {binary2 / parquet:.2f} (target >= 0.50)")
    if "astropy VOTable BINARY2" in rates:
        print(f"BINARY2 qcat / astropy rate: {binary2 / rates['astropy VOTable BINARY2']:.0f}x")


if __name__ == "__main__":
    main()
