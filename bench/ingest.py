"""Ingest benchmark: qcat partitioning against DuckDB's plain sorted rewrite.

Run: ``uv run python -m bench.ingest --objects 1000000`` (the issue's full
size is ``--objects 10000000``, about 100M sources).

For each table (Object, then Source) it measures, in separate processes
so peak memory is per phase, and alternating the two contenders:

- baseline: DuckDB alone reads the same Parquet inputs and writes them back
  as one Parquet file sorted by the key (Object: objectId; Source:
  objectId, sourceId), with the same memory limit;
- qcat: ``ingest_table`` (staging, checks, adaptive partitioning, sorted
  write, margins, director index, checksums, commit).

It prints rows/s, peak RSS and bytes written for each, and the ratio of
the medians; results are recorded by hand in ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from qcat.demo.generator import schema_path, write_demo_files


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _phase(kind: str, table: str, inputs: list[str], out: Path, memory: str) -> dict:
    """Run one measured phase in this process; return its figures."""
    t0 = time.perf_counter()
    if kind == "baseline":
        import duckdb

        con = duckdb.connect()
        con.execute(f"SET memory_limit = '{memory}'")
        con.execute(f"SET temp_directory = '{out / 'tmp'}'")
        order = "objectId" if table == "demo.Object" else "objectId, sourceId"
        files = "[" + ", ".join(f"'{f}'" for f in inputs) + "]"
        out.mkdir(parents=True, exist_ok=True)
        con.execute(
            f"COPY (SELECT * FROM read_parquet({files}) ORDER BY {order}) "
            f"TO '{out / 'sorted.parquet'}' (FORMAT parquet, COMPRESSION zstd, "
            "ROW_GROUP_SIZE 100000)"
        )
        rows = con.sql(f"SELECT count(*) FROM read_parquet('{out / 'sorted.parquet'}')").fetchall()[
            0
        ]
        shutil.rmtree(out / "tmp", ignore_errors=True)
        n = int(rows[0]) if rows else 0
    else:
        from partition.ingest import IngestOptions, ingest_table
        from qcat.schema import load_felis

        spec = load_felis(schema_path())[table]
        result = ingest_table(
            out,
            spec,
            [Path(f) for f in inputs],
            IngestOptions(memory_limit=memory, show_progress=False),
        )
        n = result.rows_added
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    written = _dir_bytes(out / "tables") if kind == "qcat" else _dir_bytes(out)
    return {
        "kind": kind,
        "table": table,
        "rows": n,
        "seconds": seconds,
        "peak_rss": peak,
        "bytes_written": written,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--objects", type=int, default=1_000_000)
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of each contender (Object only: a repeated Source ingest "
        "of the same files is skipped as already ingested)",
    )
    ap.add_argument("--memory-limit", default="2GB")
    ap.add_argument("--work", type=Path, default=Path("bench/out"))
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--table", help=argparse.SUPPRESS)
    ap.add_argument("--inputs", nargs="*", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        print(json.dumps(_phase(args.phase, args.table, args.inputs, args.out, args.memory_limit)))
        return

    src = args.work / f"input-{args.objects}"
    if not (src / "COMPLETE").exists():
        t0 = time.perf_counter()
        files = write_demo_files(src, args.objects, seed=1)
        (src / "COMPLETE").write_text("")
        print(
            f"generated {files.n_objects:,} objects, {files.n_sources:,} sources "
            f"in {time.perf_counter() - t0:.1f} s",
            flush=True,
        )
    inputs = {
        "demo.Object": sorted(str(p) for p in src.glob("Object-*.parquet")),
        "demo.Source": sorted(str(p) for p in src.glob("Source-*.parquet")),
    }
    results: dict[tuple[str, str], list[dict]] = {}
    qcat_data = args.work / "qcat-data"
    for table in ("demo.Object", "demo.Source"):
        for _ in range(args.repeat if table == "demo.Object" else 1):
            for kind in ("baseline", "qcat"):
                if kind == "qcat":
                    # Source needs the published Object; re-ingesting Object starts afresh
                    if table == "demo.Object":
                        shutil.rmtree(qcat_data, ignore_errors=True)
                    out = qcat_data
                else:
                    out = args.work / "baseline"
                    shutil.rmtree(out, ignore_errors=True)
                proc = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "bench.ingest",
                        "--phase",
                        kind,
                        "--table",
                        table,
                        "--memory-limit",
                        args.memory_limit,
                        "--out",
                        str(out),
                        "--inputs",
                        *inputs[table],
                    ],
                    capture_output=True,
                    text=True,
                )
                if proc.returncode != 0:
                    sys.exit(f"{table} {kind} failed:\n{proc.stderr}")
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                results.setdefault((table, kind), []).append(r)
                print(
                    f"{table:<12} {kind:<8} {r['rows']:>12,} rows {r['seconds']:8.1f} s "
                    f"{r['rows'] / r['seconds']:>12,.0f} rows/s  peak "
                    f"{r['peak_rss'] / 2**30:5.2f} GiB  "
                    f"wrote {r['bytes_written'] / 2**30:6.2f} GiB",
                    flush=True,
                )
    for table in ("demo.Object", "demo.Source"):
        base = statistics.median(r["seconds"] for r in results[(table, "baseline")])
        ours = statistics.median(r["seconds"] for r in results[(table, "qcat")])
        print(f"{table}: median qcat {ours:.1f} s / baseline {base:.1f} s = {ours / base:.2f}x")


if __name__ == "__main__":
    main()
