"""``qcat demo``: generate the demo survey catalog and ingest it."""

from __future__ import annotations

import sys
from pathlib import Path

from partition.ingest import IngestOptions, ingest_table
from qcat.demo.generator import schema_path, write_demo_files
from qcat.metadata.store import MetadataStore
from qcat.progress import progress
from qcat.schema import load_felis
from qcat.tap_schema import refresh_tap_schema


def run_demo(
    data_dir: Path, *, objects: int, seed: int, threshold: int, show_progress: bool = True
) -> None:
    """Generate ``objects`` Object rows (and their Sources) and ingest both tables.

    The generated input files are kept in ``<data_dir>/demo-input`` so a
    second run with the same arguments finds them already ingested.
    """
    inputs = data_dir / "demo-input" / f"objects-{objects}-seed-{seed}"
    marker = inputs / "COMPLETE"
    if not marker.exists():
        with progress("generating demo catalog", objects, enabled=show_progress) as bar:
            files = write_demo_files(inputs, objects, seed=seed, progress=bar.advance)
        marker.write_text(f"{files.n_objects} objects, {files.n_sources} sources\n")
    tables = load_felis(schema_path())
    options = IngestOptions(threshold=threshold, show_progress=show_progress)
    for name, pattern in (("demo.Object", "Object-*.parquet"), ("demo.Source", "Source-*.parquet")):
        ingest_table(data_dir, tables[name], sorted(inputs.glob(pattern)), options)
    refresh_tap_schema(data_dir)
    store = MetadataStore.for_data_dir(data_dir)
    try:
        out = sys.stdout
        out.write(f"qcat demo data in {data_dir.resolve()}\n")
        for t in store.tables():
            v = store.current_version(t.name)
            if v is None:
                continue
            orders = sorted({p.order for p in store.partitions(t.name)})
            # plain tables (TAP_SCHEMA) are one file, without HEALPix orders
            span = f" (orders {orders[0]}-{orders[-1]})" if orders else ""
            out.write(
                f"  {t.name:<19} {t.kind:<8} {v.num_rows:>12,} rows  {v.num_partitions:>5} "
                f"partitions{span}  {v.path}\n"
            )
        out.write("Try: uv run qcat admin verify --data " + str(data_dir) + "\n")
    finally:
        store.close()


DEMO_QUERY = (
    "SELECT TOP 10 objectId, coord_ra, coord_dec, r_psfMag FROM demo.Object "
    "WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(266.4, -28.9, 1)) = 1 "
    "ORDER BY r_psfMag"
)


def demo_instructions(tap_url: str) -> str:
    """What ``qcat demo`` prints once the service listens: the URL, pyvo and TOPCAT steps."""
    return f"""
qcat TAP service at {tap_url} (Ctrl-C stops it)

From Python (pip install pyvo), paste:

    import pyvo
    tap = pyvo.dal.TAPService("{tap_url}")
    result = tap.run_sync("{DEMO_QUERY}")
    print(result.to_table())

From TOPCAT: menu VO > Table Access Protocol (TAP) Query; paste
    {tap_url}
into "TAP URL" at the bottom, press "Use Service", type an ADQL query
(e.g. SELECT TOP 100 * FROM demo.Source) and press "Run Query".

From a shell:
    curl '{tap_url}/sync' --data-urlencode 'QUERY=SELECT COUNT(*) FROM demo.Object' \\
         -d RESPONSEFORMAT=csv
"""
